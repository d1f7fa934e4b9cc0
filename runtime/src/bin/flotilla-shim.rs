//! The shim as a program of its own (`flotilla-shim --root ROOT --id ID`), for the runtime's
//! tests and for embedding the runtime elsewhere; the `flotilla` binary runs the same code as
//! `flotilla shim`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(root), Some(id)) = (get("--root"), get("--id")) else {
        eprintln!("usage: flotilla-shim --root ROOT --id ID (with the answer pipe on fd 3)");
        std::process::exit(2);
    };
    std::process::exit(flotilla_runtime::shim::shim_main(
        std::path::Path::new(&root),
        &id,
    ));
}
