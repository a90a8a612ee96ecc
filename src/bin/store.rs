//! `huiying-store`: the store service as a program of its own (the same as `huiying store`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    huiying::cli::service_main(huiying::service::Service::Store).await
}
