//! Goose as a peer of loadspec in `bench/run peers`: one scenario of one transaction, chosen by
//! BENCH_MODE: `get` (GET BENCH_PATH) or `upload` (POST the prebuilt multipart body in
//! BENCH_BODY with BENCH_CONTENT_TYPE and a Bearer header, the same bytes loadspec sends).
//! Everything else (users, hatch rate, run time, host, report) is Goose's own command line.

use goose::prelude::*;
use std::sync::OnceLock;

static BODY: OnceLock<Vec<u8>> = OnceLock::new();
static PATH: OnceLock<String> = OnceLock::new();
static CTYPE: OnceLock<String> = OnceLock::new();

async fn get(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get(PATH.get().map(String::as_str).unwrap_or("/")).await?;
    Ok(())
}

async fn upload(user: &mut GooseUser) -> TransactionResult {
    let path = PATH.get().map(String::as_str).unwrap_or("/");
    let rb = user
        .get_request_builder(&GooseMethod::Post, path)?
        .header("content-type", CTYPE.get().cloned().unwrap_or_default())
        .header("authorization", "Bearer bench-token")
        .body(BODY.get().cloned().unwrap_or_default());
    let req = GooseRequest::builder().set_request_builder(rb).build();
    let _ = user.request(req).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "get".into());
    let _ = PATH.set(std::env::var("BENCH_PATH").unwrap_or_else(|_| "/".into()));
    let scenario = if mode == "upload" {
        let body = std::fs::read(std::env::var("BENCH_BODY").expect("BENCH_BODY"))
            .expect("read BENCH_BODY");
        let _ = BODY.set(body);
        let _ = CTYPE.set(std::env::var("BENCH_CONTENT_TYPE").expect("BENCH_CONTENT_TYPE"));
        scenario!("upload").register_transaction(transaction!(upload))
    } else {
        scenario!("get").register_transaction(transaction!(get))
    };
    GooseAttack::initialize()?
        .register_scenario(scenario)
        .execute()
        .await?;
    Ok(())
}
