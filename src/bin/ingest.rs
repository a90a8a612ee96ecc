//! `huiying-ingest`: the ingest service as a program of its own (the same as `huiying ingest`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    huiying::cli::service_main(huiying::service::Service::Ingest).await
}
