//! nftables in-process, through libnftables: the library the `nft` program is made of, loaded
//! when the proxy starts (`libnftables.so.1`, which Debian's nftables package depends on).
//!
//! Running `nft -f -` costs a process start and, as its netlink socket closes, a wait that grows
//! when the transaction deleted set elements: 10 to 30 ms for a one-endpoint change whatever
//! the table's size. Through the library the same script, in the same single transaction, takes
//! well under a millisecond. One thread per proxy owns the library's context and runs inside the
//! proxy's network namespace (a netlink socket belongs to the namespace it was made in), and
//! scripts reach it over a channel. Without the library the proxy runs `nft` as before.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::mpsc;

use crate::NetError;

type Reply = mpsc::Sender<Result<(), String>>;

/// A libnftables context in a network namespace of its own thread.
pub(crate) struct NftLib {
    jobs: mpsc::Sender<(String, Reply)>,
}

/// The few library functions the proxy needs.
struct Api {
    ctx_new: unsafe extern "C" fn(u32) -> *mut c_void,
    ctx_free: unsafe extern "C" fn(*mut c_void),
    buffer_output: unsafe extern "C" fn(*mut c_void) -> c_int,
    buffer_error: unsafe extern "C" fn(*mut c_void) -> c_int,
    error_buffer: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    output_buffer: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    run: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
}

impl Api {
    fn load() -> Result<Api, String> {
        // SAFETY: dlopen and dlsym with NUL-terminated names; every symbol is checked for null
        // and then given the type libnftables' header (nftables/libnftables.h) declares.
        unsafe {
            let lib = libc::dlopen(
                c"libnftables.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if lib.is_null() {
                return Err("libnftables.so.1 not found".into());
            }
            let sym = |name: &CStr| {
                let p = libc::dlsym(lib, name.as_ptr());
                if p.is_null() {
                    Err(format!("libnftables has no {}", name.to_string_lossy()))
                } else {
                    Ok(p)
                }
            };
            Ok(Api {
                ctx_new: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(u32) -> *mut c_void>(
                    sym(c"nft_ctx_new")?,
                ),
                ctx_free: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(
                    sym(c"nft_ctx_free")?,
                ),
                buffer_output: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(*mut c_void) -> c_int,
                >(sym(c"nft_ctx_buffer_output")?),
                buffer_error: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(*mut c_void) -> c_int,
                >(sym(c"nft_ctx_buffer_error")?),
                error_buffer: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(*mut c_void) -> *const c_char,
                >(sym(c"nft_ctx_get_error_buffer")?),
                output_buffer: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(*mut c_void) -> *const c_char,
                >(sym(c"nft_ctx_get_output_buffer")?),
                run: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
                >(sym(c"nft_run_cmd_from_buffer")?),
            })
        }
    }
}

impl NftLib {
    /// Loads the library and starts its thread in the namespace at `netns` (this process's
    /// own when `None`). Fails when the library or the namespace cannot be had.
    pub(crate) fn open(netns: Option<&Path>) -> Result<NftLib, String> {
        let api = Api::load()?;
        let ns = netns
            .map(|p| std::fs::File::open(p).map_err(|e| format!("opening {}: {e}", p.display())))
            .transpose()?;
        let (jobs, rx) = mpsc::channel::<(String, Reply)>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("nftables".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                if let Some(f) = ns
                    && let Err(e) = nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                {
                    let _ = ready_tx.send(Err(format!("entering the network namespace: {e}")));
                    return;
                }
                // SAFETY: the context is made, used and freed on this thread only.
                let ctx = unsafe { (api.ctx_new)(0) };
                if ctx.is_null() {
                    let _ = ready_tx.send(Err("nft_ctx_new failed".into()));
                    return;
                }
                // SAFETY: ctx is a live context; buffering keeps output and errors off stdio.
                unsafe {
                    (api.buffer_output)(ctx);
                    (api.buffer_error)(ctx);
                }
                let _ = ready_tx.send(Ok(()));
                for (script, reply) in rx {
                    let answer = match CString::new(script) {
                        Err(_) => Err("the script holds a NUL byte".to_string()),
                        // SAFETY: ctx is live and the script NUL-terminated; the error buffer
                        // is a C string the context owns until its next command.
                        Ok(s) => unsafe {
                            let rc = (api.run)(ctx, s.as_ptr());
                            // Reading the output buffer empties it: output (of a `list`) is
                            // not wanted, and must not pile up.
                            (api.output_buffer)(ctx);
                            if rc == 0 {
                                Ok(())
                            } else {
                                let e = (api.error_buffer)(ctx);
                                Err(if e.is_null() {
                                    "nftables refused the transaction".to_string()
                                } else {
                                    CStr::from_ptr(e).to_string_lossy().trim().to_string()
                                })
                            }
                        },
                    };
                    let _ = reply.send(answer);
                }
                // SAFETY: the last use of ctx.
                unsafe { (api.ctx_free)(ctx) };
            })
            .map_err(|e| format!("starting the nftables thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "the nftables thread ended".to_string())??;
        Ok(NftLib { jobs })
    }

    /// Runs `script` as one transaction, as `nft -f -` would.
    pub(crate) fn run(&self, script: &str) -> Result<(), NetError> {
        let (tx, rx) = mpsc::channel();
        let gone = || NetError::Nft {
            message: "the nftables thread ended".into(),
        };
        self.jobs
            .send((script.to_string(), tx))
            .map_err(|_| gone())?;
        rx.recv()
            .map_err(|_| gone())?
            .map_err(|message| NetError::Nft { message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_nftables_cannot_read_comes_back_with_its_message() {
        // Parsing fails before anything reaches the kernel, so this runs in the test's own
        // namespace without touching it.
        let lib = NftLib::open(None).expect("libnftables (Debian's libnftables1)");
        let err = lib.run("add tabel inet nowhere\n").unwrap_err().to_string();
        assert!(err.contains("syntax error"), "{err}");
        let err = lib.run("a\0b").unwrap_err().to_string();
        assert!(err.contains("NUL"), "{err}");
    }
}
