//! `huiying-generator`: the generator service as a program of its own (the same as `huiying generator`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    huiying::cli::service_main(huiying::service::Service::Generator).await
}
