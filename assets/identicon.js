// dyspatcher web client: the visual identity of a key. From the key ID (SHA-256 of the public key)
// alone: a hue and a 5×5 mirrored pattern, so that two people with similar names still look
// different, and the same key looks the same on every device.
const SVG = 'http://www.w3.org/2000/svg';

/** The hue (0–359) of a key ID: its first 3 hex characters. */
export const hueOf = (keyId) => parseInt(keyId.slice(0, 3), 16) % 360;

/** Which of the 15 cells of the left half and middle column are filled, from hex characters 3–6. */
function cells(keyId) {
  const bits = parseInt(keyId.slice(3, 7), 16);
  const on = [];
  for (let i = 0; i < 15; i++) on.push(((bits >> i) & 1) === 1);
  return on;
}

/** An <svg> identicon of `keyId`, `size` CSS pixels (in rem through CSS), decorative. */
export function identicon(keyId, size = 32) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 6 6');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'identicon');
  const hue = hueOf(keyId);
  const bg = document.createElementNS(SVG, 'rect');
  bg.setAttribute('width', '6');
  bg.setAttribute('height', '6');
  bg.setAttribute('rx', '1.2');
  bg.setAttribute('fill', `hsl(${hue} 55% 90%)`);
  svg.append(bg);
  const on = cells(keyId);
  for (let col = 0; col < 3; col++) {
    for (let row = 0; row < 5; row++) {
      if (!on[col * 5 + row]) continue;
      for (const x of new Set([col, 4 - col])) {
        const r = document.createElementNS(SVG, 'rect');
        r.setAttribute('x', String(0.5 + x));
        r.setAttribute('y', String(0.5 + row));
        r.setAttribute('width', '1.02');
        r.setAttribute('height', '1.02');
        r.setAttribute('fill', `hsl(${hue} 65% 38%)`);
        svg.append(r);
      }
    }
  }
  return svg;
}

/** Gives `node` its key's colour (the CSS uses --hue for a readable shade in light and dark). */
export function colour(node, keyId) {
  node.style.setProperty('--hue', String(hueOf(keyId)));
  return node;
}
