//! Embeds every file of `assets/` in the executable, with its content type.
use std::{env, fs, path::Path};

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" | "json" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Every file under `dir`, subfolders (such as `i18n/`) included.
fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(rd) = fs::read_dir(dir) else { return };
    for path in rd.filter_map(Result::ok).map(|e| e.path()) {
        if path.is_dir() {
            collect(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("assets");
    let mut entries = Vec::new();
    collect(&dir, &mut entries);
    entries.sort();
    let mut out = String::from("static ASSETS: &[Asset] = &[\n");
    for path in entries {
        // The path under assets/ with `/` separators: "app.js", "i18n/en.js".
        let name = path
            .strip_prefix(&dir)
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        println!("cargo:rerun-if-changed={}", path.display());
        out += &format!(
            "    Asset {{ name: {name:?}, content_type: {:?}, body: include_bytes!({:?}) }},\n",
            content_type(&name),
            path.display().to_string()
        );
    }
    out += "];\n";
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("assets.rs"),
        out,
    )
    .unwrap();
}
