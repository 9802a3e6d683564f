//! A tiny driver for manual checks: `cargo run -p luodi-models --example models -- list|fetch NAME|resolve SPEC`.
//! The real commands live in the luodi CLI; this only exercises the library.

use luodi_models::{catalog, human_bytes, ModelStatus, ModelStore};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = ModelStore::from_env();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["list"] | [] => {
            for e in catalog() {
                let status = match store.status(e) {
                    ModelStatus::NotDownloaded => "not downloaded".to_string(),
                    ModelStatus::Ready { .. } => "ready".to_string(),
                    ModelStatus::Damaged(reason) => format!("damaged: {reason}"),
                };
                println!("{:<14} {:>10}  {}  [{status}]", e.name, human_bytes(e.size_bytes), e.description);
            }
            Ok(())
        }
        ["fetch", name] => store.fetch(name, false).map(|p| println!("{}", p.display())),
        ["fetch", name, "--force"] => store.fetch(name, true).map(|p| println!("{}", p.display())),
        ["resolve", spec] => store.resolve(spec, true).map(|r| println!("{r:?}")),
        _ => {
            eprintln!("usage: models list | fetch NAME [--force] | resolve SPEC");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
