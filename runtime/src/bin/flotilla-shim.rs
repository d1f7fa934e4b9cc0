//! The shim as a program of its own (`flotilla-shim --root ROOT --id ID [--exec -- CMD...]`),
//! for the runtime's tests and for embedding the runtime elsewhere; the `flotilla` binary runs
//! the same code as `flotilla shim`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(root), Some(id)) = (get("--root"), get("--id")) else {
        eprintln!(
            "usage: flotilla-shim --root ROOT --id ID (with the answer pipe on fd 3)\n       flotilla-shim --root ROOT --id ID --exec -- CMD [ARG...]"
        );
        std::process::exit(2);
    };
    let root = std::path::Path::new(&root);
    if args.iter().any(|a| a == "--exec") {
        let cmd: Vec<String> = args
            .iter()
            .skip_while(|a| *a != "--")
            .skip(1)
            .cloned()
            .collect();
        std::process::exit(flotilla_runtime::exec::exec_main(root, &id, &cmd));
    }
    std::process::exit(flotilla_runtime::shim::shim_main(root, &id));
}
