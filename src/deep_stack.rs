//! Threads with deep stacks for the code that decodes AMQP messages.
//!
//! serde_amqp 0.16 decodes a value by recursion, one call per level of nesting, with no
//! limit. A described value nests in 2 bytes (`0x00 0x44` and the value), and each level
//! takes about 820 bytes of stack in a release build (about 8 kB in a debug one). At a
//! thread's usual 2 MiB, a 6 kB message is enough to overflow the stack, and an overflow
//! aborts the whole process: one such event on a partition would crash every replica that
//! reads it, again after every restart, since the checkpoint never passes it. The decoding
//! happens inside the SDK's receive (and inside fe2o3's for the emulator), where no depth
//! check of ours can reach, so the threads that call them get stacks deep enough for the
//! largest message Event Hubs accepts (1 MB) nested at every byte: 512 MiB.
//!
//! That is address space, not memory: a stack's pages are only allocated as deep as it
//! goes. A message nested that deep does touch them, once, and the thread keeps them (about
//! 400 bytes of memory per byte of the deepest message it met). Larger messages (the 20 MB
//! of some dedicated clusters) nested throughout would still overflow.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// The stack of each thread that decodes AMQP messages.
pub const STACK: usize = 512 << 20;

/// A multi-threaded runtime builder whose threads (workers and blocking) have [`STACK`].
pub fn builder(name: &str) -> Builder {
    let mut builder = Builder::new_multi_thread();
    builder
        .enable_all()
        .thread_name(name)
        .thread_stack_size(STACK)
        // Blocking threads get the same stack; the decoding code never blocks, so a few do.
        .max_blocking_threads(4);
    builder
}

/// A runtime for the AMQP source's partition readers, built on first use and kept for the
/// life of the process. Its tasks may use resources of the caller's runtime (channels,
/// connections): tokio wakes a task wherever it runs.
pub fn handle() -> &'static Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            builder("hubwatch-amqp")
                .build()
                .expect("the AMQP readers' runtime starts (it needs only threads)")
        })
        .handle()
}
