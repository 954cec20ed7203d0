//! An empty Rust Lambda: `lambda_runtime` on tokio's multi-threaded runtime, as `#[tokio::main]`
//! and `cargo lambda new` give it (the functions run on a current-thread runtime, which suits
//! one invocation at a time), taking any JSON event and answering a fixed proxy response. It is
//! the floor the benchmarks hold the functions' cold start and invocation CPU against (built
//! with the same release profile in the same run); it does nothing else and is never deployed.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

fn main() -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(lambda_runtime::run(service_fn(
            |_event: LambdaEvent<Value>| async {
                Ok::<Value, Error>(json!({"statusCode": 200, "body": ""}))
            },
        )))
}
