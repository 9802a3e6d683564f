pub mod bench;
pub mod bench_guard;
pub mod bench_http;
pub mod chat;
pub mod generate;
pub mod guard;
pub mod models;
pub mod serve;
