//! `huiying-webhook`: the webhook service as a program of its own (the same as `huiying webhook`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    huiying::cli::service_main(huiying::service::Service::Webhook).await
}
