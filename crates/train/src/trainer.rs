//! The training loop: data order, micro-batches and gradient accumulation, AdamW with the
//! schedule and clipping, evaluation, logs, checkpoints that resume exactly, and outputs.

use crate::config::{Method, TrainConfig};
use crate::data::{self, Objective, Prepared, Sequence};
use crate::error::{Result, TrainError};
use crate::model::{Batch, Model};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::peft::{self, AdapterConfig};
use crate::rng::SplitMix64;
use crate::schedule::Schedule;
use crate::tensors::{self, Named};
use luodi_engine::model::ModelConfig;
use luodi_engine::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const STATE_FILE: &str = "trainer_state.json";
pub const LOG_FILE: &str = "train_log.jsonl";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Full fine-tuning's servable output: the base GGUF with every trained tensor replaced.
pub const MODEL_GGUF_FILE: &str = "model.gguf";
pub const CONFIG_FILE: &str = "train_config.json";

/// Distinct streams from one `--seed`: LoRA initialisation, data order, dropout, the split.
const DATA_STREAM: u64 = 0x5EED_DA7A;
const DROPOUT_STREAM: u64 = 0x5EED_D209;
const SPLIT_STREAM: u64 = 0x5EED_5917;

/// Tokenized training and validation data.
pub struct Datasets {
    pub objective: Objective,
    pub records: usize,
    pub train: Prepared,
    pub validation: Option<Prepared>,
}

/// Reads and tokenizes the data with the model's own tokenizer and chat template.
pub fn prepare(config: &TrainConfig, engine: &Engine) -> Result<Datasets> {
    let (objective, mut records) = data::read_records(&config.train_file)?;
    let mut validation_records = None;
    if let Some(path) = &config.validation_file {
        let (vobj, v) = data::read_records(path)?;
        if vobj != objective {
            return Err(TrainError::flag(
                "validation_file",
                format!("holds {vobj:?} records but --train_file holds {objective:?} records"),
            ));
        }
        validation_records = Some(v);
    } else if config.validation_split > 0.0 {
        if records.len() < 2 {
            return Err(TrainError::flag("validation_split", "needs at least 2 records to split"));
        }
        SplitMix64::new(config.seed ^ SPLIT_STREAM).shuffle(&mut records);
        let n = ((records.len() as f32 * config.validation_split).ceil() as usize).clamp(1, records.len() - 1);
        validation_records = Some(records.drain(..n).collect());
    }
    let n_records = records.len();
    let tok = engine.tokenizer();
    let template = engine.chat_template();
    let train = data::prepare(objective, &records, tok, template, config.max_seq_length)?;
    if train.sequences.is_empty() {
        return Err(TrainError::flag(
            "train_file",
            "no sequence with a trained token remains (are all examples longer than --max_seq_length?)",
        ));
    }
    let validation = match validation_records {
        Some(v) => Some(data::prepare(objective, &v, tok, template, config.max_seq_length)?),
        None => None,
    };
    Ok(Datasets { objective, records: n_records, train, validation })
}

fn tokens(p: &Prepared) -> (usize, usize) {
    p.sequences
        .iter()
        .fold((0, 0), |(n, t), s| (n + s.tokens.len(), t + s.trained.iter().skip(1).filter(|&&x| x).count()))
}

/// The plan of a run: how many optimizer steps, and warmup.
pub fn plan(config: &TrainConfig, sequences: usize) -> (usize, usize, usize) {
    let micro_per_epoch = sequences.div_ceil(config.per_device_train_batch_size);
    let total = config.max_steps.unwrap_or_else(|| {
        ((config.num_train_epochs as f64 * micro_per_epoch as f64) / config.gradient_accumulation_steps as f64).ceil()
            as usize
    });
    let total = total.max(1);
    let warmup = config.warmup_steps.unwrap_or((config.warmup_ratio as f64 * total as f64).ceil() as usize);
    (total, warmup, micro_per_epoch)
}

/// `luodi train --dry-run`: what would be trained, and one example with its trained spans marked.
pub fn dry_run(config: &TrainConfig, engine: &Engine, out: &mut dyn Write) -> Result<()> {
    let sets = prepare(config, engine)?;
    let (total, warmup, _) = plan(config, sets.train.sequences.len());
    let (n_tok, n_trained) = tokens(&sets.train);
    let w = |out: &mut dyn Write, s: String| {
        let _ = writeln!(out, "{s}");
    };
    w(out, format!("model: {} ({})", config.model_name, config.model_path.display()));
    w(
        out,
        format!(
            "objective: {}",
            match sets.objective {
                Objective::ContinualPretraining => "continual pre-training (text records, packed)",
                Objective::SupervisedFineTuning => "supervised fine-tuning (chat records, loss on assistant turns)",
            }
        ),
    );
    w(
        out,
        format!(
            "train: {} records -> {} sequences, {n_tok} tokens, {n_trained} trained",
            sets.records - sets.validation.as_ref().map_or(0, |_| 0),
            sets.train.sequences.len()
        ),
    );
    if sets.train.truncated + sets.train.dropped > 0 {
        w(
            out,
            format!(
                "cut at --max_seq_length {}: {} conversations truncated, {} left with no trained token and skipped",
                config.max_seq_length, sets.train.truncated, sets.train.dropped
            ),
        );
    }
    if let Some(v) = &sets.validation {
        let (vt, vtr) = tokens(v);
        w(out, format!("validation: {} sequences, {vt} tokens, {vtr} scored", v.sequences.len()));
    }
    w(
        out,
        format!(
            "steps: {total} (warmup {warmup}), batch {} x {} accumulation",
            config.per_device_train_batch_size, config.gradient_accumulation_steps
        ),
    );
    w(out, "example (trained spans in ⟦ ⟧):".into());
    w(out, data::show_trained(engine.tokenizer(), &sets.train.sequences[0]));
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    pub global_step: usize,
    pub max_steps: usize,
    /// Micro-batches consumed so far: the data position.
    pub micro_batches: usize,
    pub epoch: f64,
    pub dropout_rng: u64,
    pub schedule: Schedule,
    pub method: Method,
    pub base_sha256: String,
    pub log_history: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub steps: usize,
    pub train_loss: f64,
    pub eval_loss: Option<f64>,
    pub tokens_per_second: f64,
    pub trainable_parameters: usize,
    pub output_dir: PathBuf,
}

/// The order of sequences in `epoch`: a shuffle seeded by `--seed` and the epoch, so any
/// data position can be recomputed on resume.
fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed ^ DATA_STREAM ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut order);
    order
}

fn micro_batch(seqs: &[Sequence], seed: u64, bs: usize, per_epoch: usize, k: usize) -> Batch {
    let (epoch, j) = (k / per_epoch, k % per_epoch);
    let order = epoch_order(seed, epoch, seqs.len());
    let mut batch = Batch::default();
    for &i in order.chunks(bs).nth(j).expect("micro-batch index within the epoch") {
        batch.push(&seqs[i].tokens, &seqs[i].trained);
    }
    batch
}

/// Mean loss per scored token over `seqs`, with no gradient.
pub fn evaluate(model: &mut Model, seqs: &[Sequence], bs: usize) -> f64 {
    let (mut sum, mut n) = (0.0, 0);
    for chunk in seqs.chunks(bs) {
        let mut batch = Batch::default();
        for s in chunk {
            batch.push(&s.tokens, &s.trained);
        }
        let out = model.forward_backward(&batch, None, None, false);
        sum += out.loss_sum;
        n += out.rows;
    }
    sum / n.max(1) as f64
}

/// The file's sha256, as the model store computes it (recorded with every adapter).
pub fn sha256_file(path: &Path) -> Result<String> {
    luodi_models::hash_file(path, |_| {}).map_err(|e| TrainError::file(path, format!("cannot read: {e}")))
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("state serializes") + "\n";
    std::fs::write(path, text).map_err(|e| TrainError::file(path, format!("cannot write: {e}")))
}

fn adapter_config(config: &TrainConfig) -> AdapterConfig {
    AdapterConfig {
        peft_type: "LORA".into(),
        task_type: "CAUSAL_LM".into(),
        base_model_name_or_path: config.model_name.clone(),
        r: config.lora_r,
        lora_alpha: config.lora_alpha,
        lora_dropout: config.lora_dropout,
        target_modules: config.target_modules.iter().map(|t| t.peft_name().to_string()).collect(),
        bias: "none".into(),
        fan_in_fan_out: false,
        inference_mode: true,
        use_rslora: false,
        use_dora: false,
        rank_pattern: Default::default(),
        alpha_pattern: Default::default(),
    }
}

/// Writes the trained tensors (a PEFT adapter, or all weights for full fine-tuning) into `dir`.
fn save_model(dir: &Path, model: &mut Model, arch: &str, config: &TrainConfig, sha: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::file(dir, format!("cannot create: {e}")))?;
    let metadata = HashMap::from([
        ("luodi.base_model".to_string(), config.model_name.clone()),
        ("luodi.base_sha256".to_string(), sha.to_string()),
    ]);
    match config.method {
        Method::Lora => {
            peft::save(dir, model, arch, &adapter_config(config), metadata)?;
            let name = format!("{} LoRA", config.model_name);
            crate::gguf_lora::save(&dir.join(crate::gguf_lora::FILE), model, arch, config.lora_alpha, &name)
        }
        Method::Full => {
            let mut named = Vec::new();
            model.visit_params(|name, p, _| {
                named.push(Named { name: name.into(), shape: vec![p.len()], values: p.to_vec() })
            });
            tensors::write(&dir.join(WEIGHTS_FILE), &named, metadata)
        }
    }
}

/// The fully fine-tuned model as a GGUF that `luodi serve -m` and llama.cpp load: the base's
/// metadata and tokenizer, matrices in f16 (half of f32's size at ~1e-3 relative rounding),
/// norms in f32. The model holds every tensor in the GGUF's own layout and row order, so the
/// values go back under the names they came from.
fn save_full_gguf(base: &Path, out: &Path, model: &mut Model, sha: &str) -> Result<()> {
    use candle_core::quantized::{gguf_file::Value, GgmlDType};
    let header = luodi_engine::model::read_header(base)?;
    let content = &header.1;
    let mut trained = HashMap::new();
    let mut failed = None;
    model.visit_params(|name, p, _| {
        if failed.is_some() {
            return;
        }
        let Some(info) = content.tensor_infos.get(name) else {
            failed = Some(TrainError::file(base, format!("has no tensor `{name}` to put the trained values in")));
            return;
        };
        match crate::gguf_write::quantize(p, info.shape.dims(), GgmlDType::F16) {
            Ok(q) => {
                trained.insert(name.to_string(), q);
            }
            Err(e) => failed = Some(e),
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let extra = vec![
        ("luodi.train.method".to_string(), Value::String("full".into())),
        ("luodi.train.base_sha256".to_string(), Value::String(sha.to_string())),
    ];
    crate::gguf_write::write_like(header, out, "output_dir", extra, |name, _| Ok(trained.remove(name)))?;
    Ok(())
}

fn save_checkpoint(
    dir: &Path,
    model: &mut Model,
    mc: &ModelConfig,
    opt: &AdamW,
    state: &TrainerState,
    config: &TrainConfig,
) -> Result<()> {
    save_model(dir, model, &mc.architecture, config, &state.base_sha256)?;
    let mut named = Vec::with_capacity(2 * opt.moments.len());
    for (name, m, v) in &opt.moments {
        named.push(Named { name: format!("{name}.exp_avg"), shape: vec![m.len()], values: m.clone() });
        named.push(Named { name: format!("{name}.exp_avg_sq"), shape: vec![v.len()], values: v.clone() });
    }
    tensors::write(&dir.join(OPTIMIZER_FILE), &named, HashMap::from([("step".into(), opt.step.to_string())]))?;
    write_json(&dir.join(STATE_FILE), state)?;
    write_json(&dir.join(CONFIG_FILE), config)
}

/// Restores model tensors, optimizer moments and trainer state from a checkpoint directory.
fn resume(
    dir: &Path,
    model: &mut Model,
    mc: &ModelConfig,
    opt: &mut AdamW,
    config: &TrainConfig,
    sha: &str,
) -> Result<TrainerState> {
    let spath = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&spath)
        .map_err(|e| TrainError::flag("resume_from_checkpoint", format!("{}: {e}", spath.display())))?;
    let state: TrainerState =
        serde_json::from_str(&text).map_err(|e| TrainError::file(&spath, format!("not a trainer state: {e}")))?;
    if state.method != config.method {
        return Err(TrainError::flag(
            "resume_from_checkpoint",
            format!("the checkpoint was trained with --method {:?}", state.method),
        ));
    }
    if state.base_sha256 != sha {
        return Err(TrainError::flag(
            "resume_from_checkpoint",
            "the checkpoint was trained on a different base model file (sha256 differs)",
        ));
    }
    match config.method {
        Method::Lora => {
            peft::load(dir, model, mc)?;
        }
        Method::Full => {
            let (saved, _) = tensors::read(&dir.join(WEIGHTS_FILE))?;
            let mut missing = None;
            model.visit_params(|name, p, _| match saved.get(name) {
                Some(t) if t.values.len() == p.len() => p.copy_from_slice(&t.values),
                _ => missing = missing.take().or(Some(name.to_string())),
            });
            if let Some(name) = missing {
                return Err(TrainError::file(
                    &dir.join(WEIGHTS_FILE),
                    format!("has no tensor `{name}` of the right size"),
                ));
            }
        }
    }
    let opath = dir.join(OPTIMIZER_FILE);
    let (saved, meta) = tensors::read(&opath)?;
    for (name, m, v) in &mut opt.moments {
        for (suffix, into) in [("exp_avg", &mut *m), ("exp_avg_sq", &mut *v)] {
            let t = saved.get(&format!("{name}.{suffix}")).filter(|t| t.values.len() == into.len());
            let t = t.ok_or_else(|| TrainError::file(&opath, format!("has no `{name}.{suffix}` of the right size")))?;
            into.copy_from_slice(&t.values);
        }
    }
    opt.step = meta.get("step").and_then(|s| s.parse().ok()).unwrap_or(state.global_step as u64);
    Ok(state)
}

/// The engine for the base model's tokenizer and chat template (`--chat_template` applied).
pub fn load_engine(config: &TrainConfig) -> Result<Engine> {
    let mut engine = Engine::load(&config.model_path)?;
    if let Some(path) = &config.chat_template {
        let src = std::fs::read_to_string(path)
            .map_err(|e| TrainError::flag("chat_template", format!("{}: {e}", path.display())))?;
        engine.set_chat_template(src)?;
    }
    Ok(engine)
}

/// Runs training to the end and writes the outputs into `--output_dir`.
pub fn run(config: &TrainConfig) -> Result<Summary> {
    config.validate()?;
    crate::memory::keep_freed_memory();
    let sha = sha256_file(&config.model_path)?;
    let engine = load_engine(config)?;
    let model_config = engine.config().clone();
    let sets = prepare(config, &engine)?;
    // The quantized serving copy is not needed to train: free it before the f32 weights load.
    drop(engine);
    let mut model = Model::load(&config.model_path, &model_config)?;
    match config.method {
        Method::Lora => {
            let mut init = SplitMix64::new(config.seed);
            model.add_lora(&config.target_modules, config.lora_r, config.lora_alpha, config.lora_dropout, &mut init);
        }
        Method::Full => model.train_all(),
    }
    let trainable = model.trainable_parameters();
    let out_dir = &config.output_dir;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| TrainError::flag("output_dir", format!("cannot create {}: {e}", out_dir.display())))?;
    let adam = AdamWConfig {
        beta1: config.adam_beta1,
        beta2: config.adam_beta2,
        eps: config.adam_epsilon,
        weight_decay: config.weight_decay,
    };
    let mut opt = AdamW::new(adam, &mut model);
    let seqs = &sets.train.sequences;
    let (total, warmup, per_epoch) = plan(config, seqs.len());
    let schedule = Schedule {
        kind: config.lr_scheduler_type,
        peak: config.learning_rate,
        warmup_steps: warmup,
        total_steps: total,
    };
    let mut state = TrainerState {
        global_step: 0,
        max_steps: total,
        micro_batches: 0,
        epoch: 0.0,
        dropout_rng: config.seed ^ DROPOUT_STREAM,
        schedule,
        method: config.method,
        base_sha256: sha.clone(),
        log_history: Vec::new(),
    };
    if let Some(dir) = &config.resume_from_checkpoint {
        state = resume(dir, &mut model, &model_config, &mut opt, config, &sha)?;
        state.max_steps = total;
    }
    let mut dropout = SplitMix64::new(state.dropout_rng);
    let log_path = out_dir.join(LOG_FILE);
    let mut log =
        std::fs::File::create(&log_path).map_err(|e| TrainError::file(&log_path, format!("cannot write: {e}")))?;
    for entry in &state.log_history {
        writeln!(log, "{entry}").map_err(|e| TrainError::file(&log_path, format!("cannot write: {e}")))?;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("progress template"),
    );
    bar.set_position(state.global_step as u64);
    let started = Instant::now();
    let mut tokens_seen = 0usize;
    let mut last_loss = f64::NAN;
    let mut eval_loss = None;
    let bs = config.per_device_train_batch_size;
    let val = sets.validation.as_ref().map(|v| &v.sequences[..]).filter(|v| !v.is_empty());
    while state.global_step < total {
        model.zero_grads();
        let batches: Vec<Batch> = (0..config.gradient_accumulation_steps)
            .map(|i| micro_batch(seqs, config.seed, bs, per_epoch, state.micro_batches + i))
            .collect();
        let scored: usize = batches.iter().map(Batch::labelled).sum();
        let scale = 1.0 / scored.max(1) as f32;
        let mut loss_sum = 0.0;
        for b in &batches {
            loss_sum +=
                model.forward_backward(b, Some(scale), Some(&mut dropout), config.gradient_checkpointing).loss_sum;
            tokens_seen += b.rows();
        }
        let grad_norm = clip_grad_norm(&mut model, config.max_grad_norm);
        let lr = schedule.lr(state.global_step);
        opt.update(&mut model, lr);
        state.global_step += 1;
        state.micro_batches += batches.len();
        state.epoch = state.micro_batches as f64 / per_epoch as f64;
        state.dropout_rng = dropout.state();
        last_loss = loss_sum / scored.max(1) as f64;
        let tps = tokens_seen as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let mut entry = json!({
            "step": state.global_step,
            "epoch": (state.epoch * 1e4).round() / 1e4,
            "loss": last_loss,
            "learning_rate": lr,
            "grad_norm": grad_norm,
            "tokens": batches.iter().map(Batch::rows).sum::<usize>(),
            "tokens_per_second": tps,
        });
        let at_eval =
            config.eval_steps.is_some_and(|e| state.global_step.is_multiple_of(e)) || state.global_step == total;
        if let (true, Some(v)) = (at_eval, val) {
            let l = evaluate(&mut model, v, bs);
            eval_loss = Some(l);
            entry["eval_loss"] = json!(l);
            entry["eval_perplexity"] = json!(l.exp());
        }
        writeln!(log, "{entry}").map_err(|e| TrainError::file(&log_path, format!("cannot write: {e}")))?;
        if state.global_step.is_multiple_of(config.logging_steps) || state.global_step == total {
            let msg = format!("loss {last_loss:.4} lr {lr:.2e} {tps:.0} tok/s");
            if bar.is_hidden() {
                eprintln!(
                    "step {}/{total}: {msg}{}",
                    state.global_step,
                    eval_loss.map_or(String::new(), |l| format!(" eval_loss {l:.4}"))
                );
            }
            bar.set_message(msg);
        }
        state.log_history.push(entry);
        bar.set_position(state.global_step as u64);
        if config.save_steps.is_some_and(|s| state.global_step.is_multiple_of(s)) && state.global_step < total {
            let dir = out_dir.join(format!("checkpoint-{}", state.global_step));
            save_checkpoint(&dir, &mut model, &model_config, &opt, &state, config)?;
        }
    }
    bar.finish_and_clear();
    save_model(out_dir, &mut model, &model_config.architecture, config, &sha)?;
    if config.method == Method::Full {
        save_full_gguf(&config.model_path, &out_dir.join(MODEL_GGUF_FILE), &mut model, &sha)?;
    }
    write_json(&out_dir.join(STATE_FILE), &state)?;
    write_json(&out_dir.join(CONFIG_FILE), config)?;
    Ok(Summary {
        steps: state.global_step,
        train_loss: last_loss,
        eval_loss,
        tokens_per_second: tokens_seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
        trainable_parameters: trainable,
        output_dir: out_dir.clone(),
    })
}
