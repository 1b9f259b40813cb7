//! The `dyspatcher` executable.
fn main() {}
