//! `huiying-mailer`: the mailer service as a program of its own (the same as `huiying mailer`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    huiying::cli::service_main(huiying::service::Service::Mailer).await
}
