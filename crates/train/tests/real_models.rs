//! The trainer on the real bundled models: its forward pass agrees with the serving engine,
//! LoRA training on a small fictional bank lowers the held-out loss, the saved PEFT adapter
//! loads back to the same model, a resumed run continues the same loss curve, and full
//! fine-tuning's model.gguf serves the trained weights.

use luodi_engine::Engine;
use luodi_train::config::{Method, TrainConfig};
use luodi_train::data;
use luodi_train::model::{Model, Target};
use luodi_train::schedule::Kind;
use luodi_train::{peft, trainer};
use std::path::{Path, PathBuf};

mod common;
use common::model_path;

fn smollm() -> PathBuf {
    model_path("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn config(out: &Path) -> TrainConfig {
    TrainConfig {
        model_path: smollm(),
        model_name: "smollm2-135m".into(),
        chat_template: None,
        train_file: data_file("lumen_bank_train.jsonl"),
        validation_file: Some(data_file("lumen_bank_validation.jsonl")),
        validation_split: 0.0,
        output_dir: out.to_path_buf(),
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 1,
        num_train_epochs: 1.0,
        max_steps: Some(24),
        learning_rate: 2e-3,
        lr_scheduler_type: Kind::Linear,
        warmup_steps: None,
        warmup_ratio: 0.0,
        max_seq_length: 96,
        seed: 7,
        method: Method::Lora,
        lora_r: 8,
        lora_alpha: 16.0,
        lora_dropout: 0.05,
        target_modules: vec![Target::Q, Target::V],
        save_steps: None,
        eval_steps: None,
        logging_steps: 100,
        resume_from_checkpoint: None,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_epsilon: 1e-8,
        gradient_checkpointing: false,
    }
}

/// Compares the trainer's f32 forward with the engine's (int8 activations, f16 KV cache) on
/// one prompt: same top token, and logits within a small fraction of their spread.
fn check_parity(path: &Path, prompt: &str) {
    let engine = Engine::load(path).unwrap();
    let tokens = engine.tokenizer().encode(prompt, true, false).unwrap();
    let mut session = engine.new_session(64).unwrap();
    let served = engine.forward_tokens(&mut session, &tokens).unwrap();
    let mut model = Model::load(path, engine.config()).unwrap();
    let trained = model.last_logits(&tokens);
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(argmax(&served), argmax(&trained), "top token differs for {prompt:?}");
    let spread = served.iter().fold(f32::MIN, |m, &x| m.max(x)) - served.iter().fold(f32::MAX, |m, &x| m.min(x));
    let worst = served.iter().zip(&trained).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 0.05 * spread, "{}: worst logit difference {worst} of a spread of {spread}", path.display());
}

#[test]
fn the_trainers_forward_matches_the_serving_engine() {
    check_parity(&smollm(), "The capital of France is");
    check_parity(&model_path("gemma3-270m", "gemma-3-270m-q4_k_m.gguf"), "流明银行的客服热线");
}

fn validation_loss(model: &mut Model) -> f64 {
    let engine = Engine::load(&smollm()).unwrap();
    let (objective, records) = data::read_records(&data_file("lumen_bank_validation.jsonl")).unwrap();
    let prepared = data::prepare(objective, &records, engine.tokenizer(), engine.chat_template(), 96).unwrap();
    trainer::evaluate(model, &prepared.sequences, 4)
}

#[test]
fn lora_on_a_fictional_bank_lowers_held_out_loss_and_its_adapter_loads_serves_and_merges() {
    let out = tempfile::tempdir().unwrap();
    let summary = trainer::run(&config(out.path())).unwrap();
    let engine = Engine::load(&smollm()).unwrap();
    let mut base = Model::load(&smollm(), engine.config()).unwrap();
    let before = validation_loss(&mut base);
    let after = summary.eval_loss.expect("validation loss at the last step");
    eprintln!("held-out loss {before:.3} -> {after:.3}");
    assert!(after < 0.7 * before, "held-out loss {before:.3} -> {after:.3}");
    // The saved adapter, loaded into a fresh model, is the trained model.
    let (cfg, meta) = peft::load(out.path(), &mut base, engine.config()).unwrap();
    assert_eq!((cfg.r, cfg.target_modules.as_slice()), (8, &["q_proj".to_string(), "v_proj".to_string()][..]));
    assert_eq!(meta.get("luodi.base_sha256"), Some(&trainer::sha256_file(&smollm()).unwrap()));
    let reloaded = validation_loss(&mut base);
    assert!((reloaded - after).abs() < 1e-4, "reloaded adapter scores {reloaded}, trained model {after}");
    // The engine applies the same adapter at inference (`luodi generate --lora`) with the same effect.
    let mut served = Engine::load(&smollm()).unwrap();
    served.load_lora(out.path()).unwrap();
    let tokens = served.tokenizer().encode("How much does the Aurora account cost?", true, false).unwrap();
    let mut session = served.new_session(64).unwrap();
    let with_engine = served.forward_tokens(&mut session, &tokens).unwrap();
    let with_trainer = base.last_logits(&tokens);
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(argmax(&with_engine), argmax(&with_trainer), "the engine's adapted top token differs");
    let worst = with_engine.iter().zip(&with_trainer).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    // The same bound as the base model's parity (int8 activations and f16 KV in the engine).
    let spread =
        with_engine.iter().fold(f32::MIN, |m, &x| m.max(x)) - with_engine.iter().fold(f32::MAX, |m, &x| m.min(x));
    assert!(worst < 0.05 * spread, "adapted logits differ by up to {worst} of a spread of {spread}");
    // Merged into an f16 GGUF, the adapter's effect is kept: same perplexity within 1%, and
    // the engine serving the merged file picks the same token as the engine with the adapter.
    let merged = out.path().join("merged.gguf");
    let report = luodi_train::merge::merge(&smollm(), out.path(), &merged, luodi_train::merge::OutType::F16).unwrap();
    assert_eq!(report.merged_tensors, 2 * 30, "q_proj and v_proj of 30 blocks");
    let (ppl_adapter, ppl_merged) =
        luodi_train::merge::compare(&smollm(), out.path(), &merged, &data_file("lumen_bank_validation.jsonl"), 96)
            .unwrap();
    assert!((ppl_merged.exp() / ppl_adapter.exp() - 1.0).abs() < 0.01, "perplexity {ppl_adapter} -> {ppl_merged}");
    let merged_engine = Engine::load(&merged).unwrap();
    let mut session = merged_engine.new_session(64).unwrap();
    assert_eq!(argmax(&merged_engine.forward_tokens(&mut session, &tokens).unwrap()), argmax(&with_engine));
    // The GGUF LoRA for llama.cpp: its metadata, names, shapes, and B in the GGUF's row order.
    let gguf = out.path().join(luodi_train::gguf_lora::FILE);
    let mut f = std::fs::File::open(&gguf).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let meta = |k: &str| content.metadata.get(k).unwrap_or_else(|| panic!("{k} missing"));
    assert_eq!(meta("general.type").to_string().unwrap(), "adapter");
    assert_eq!(meta("adapter.type").to_string().unwrap(), "lora");
    assert_eq!(meta("adapter.lora.alpha").to_f32().unwrap(), 16.0);
    assert_eq!(content.tensor_infos.len(), 2 * 2 * 30);
    let b = content.tensor(&mut f, "blk.3.attn_q.weight.lora_b", &candle_core::Device::Cpu).unwrap();
    assert_eq!(b.shape().dims(), [576, 8]);
    let b: Vec<f32> = b.dequantize(&candle_core::Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(b, base.blocks[3].q.lora.as_ref().unwrap().b, "GGUF LoRA B is not in the GGUF's row order");
    let log = std::fs::read_to_string(out.path().join(trainer::LOG_FILE)).unwrap();
    assert_eq!(log.lines().count(), 24, "one log line per step");
}

#[test]
fn a_resumed_run_continues_the_same_loss_curve() {
    let straight = tempfile::tempdir().unwrap();
    let mut cfg = config(straight.path());
    cfg.max_steps = Some(4);
    cfg.save_steps = Some(2);
    cfg.validation_file = None;
    trainer::run(&cfg).unwrap();
    let resumed = tempfile::tempdir().unwrap();
    let mut again = cfg.clone();
    again.output_dir = resumed.path().to_path_buf();
    again.resume_from_checkpoint = Some(straight.path().join("checkpoint-2"));
    trainer::run(&again).unwrap();
    let losses = |dir: &Path| -> Vec<f64> {
        let state: trainer::TrainerState =
            serde_json::from_str(&std::fs::read_to_string(dir.join(trainer::STATE_FILE)).unwrap()).unwrap();
        state.log_history.iter().map(|e| e["loss"].as_f64().unwrap()).collect()
    };
    let (a, b) = (losses(straight.path()), losses(resumed.path()));
    assert_eq!(a.len(), 4);
    assert_eq!(b.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        // Parallel reductions may sum in another order: equal to float rounding, not bitwise.
        assert!((x - y).abs() < 1e-4 * x.abs(), "straight {a:?} vs resumed {b:?}");
    }
}

#[test]
fn continual_pretraining_on_domain_text_lowers_held_out_perplexity() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.train_file = data_file("lumen_bank_text_train.jsonl");
    cfg.validation_file = Some(data_file("lumen_bank_text_validation.jsonl"));
    cfg.max_seq_length = 64;
    cfg.max_steps = Some(16);
    let summary = trainer::run(&cfg).unwrap();
    let engine = Engine::load(&smollm()).unwrap();
    let (objective, records) = data::read_records(&data_file("lumen_bank_text_validation.jsonl")).unwrap();
    assert_eq!(objective, data::Objective::ContinualPretraining);
    let prepared = data::prepare(objective, &records, engine.tokenizer(), None, 64).unwrap();
    let mut base = Model::load(&smollm(), engine.config()).unwrap();
    let before = trainer::evaluate(&mut base, &prepared.sequences, 4).exp();
    let after = summary.eval_loss.expect("validation loss at the last step").exp();
    eprintln!("held-out perplexity {before:.2} -> {after:.2}");
    assert!(after < 0.8 * before, "held-out perplexity {before:.2} -> {after:.2}");
}

#[test]
fn full_fine_tuning_writes_a_gguf_that_serves_the_trained_model() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.method = Method::Full;
    cfg.train_file = data_file("lumen_bank_text_train.jsonl");
    cfg.validation_file = Some(data_file("lumen_bank_text_validation.jsonl"));
    cfg.max_seq_length = 64;
    cfg.max_steps = Some(6);
    cfg.learning_rate = 1e-4;
    let summary = trainer::run(&cfg).unwrap();
    let gguf = out.path().join(trainer::MODEL_GGUF_FILE);
    let engine = Engine::load(&gguf).unwrap();
    let (objective, records) = data::read_records(&data_file("lumen_bank_text_validation.jsonl")).unwrap();
    let prepared = data::prepare(objective, &records, engine.tokenizer(), None, 64).unwrap();
    let mut base = Model::load(&smollm(), engine.config()).unwrap();
    let before = trainer::evaluate(&mut base, &prepared.sequences, 4);
    drop(base);
    let mut reloaded = Model::load(&gguf, engine.config()).unwrap();
    let written = trainer::evaluate(&mut reloaded, &prepared.sequences, 4);
    let trained = summary.eval_loss.expect("validation loss at the last step");
    eprintln!("held-out loss: base {before:.4}, trained {trained:.4}, from model.gguf (f16) {written:.4}");
    assert!(trained < before - 0.1, "full fine-tuning did not lower the held-out loss: {before} -> {trained}");
    // f16 storage rounds each weight by ~5e-4 relative: the loss moves by far less than training did.
    assert!(
        (written - trained).abs() < 0.02 * (before - trained),
        "model.gguf scores {written}, the trainer {trained}"
    );
    drop(reloaded);
    drop(engine);
    // The serving engine reads the written file as the trainer does.
    check_parity(&gguf, "流明银行的金卡");
}
