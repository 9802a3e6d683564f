//! A training run's settings, checked before anything is loaded: every problem names the
//! flag (as `luodi train --help` spells it) and what it expects.

use crate::error::{Result, TrainError};
use crate::model::Target;
use crate::schedule::Kind;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Lora,
    Full,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// The GGUF file trained on and the name it was asked by.
    pub model_path: PathBuf,
    pub model_name: String,
    /// A chat template file replacing the model's.
    pub chat_template: Option<PathBuf>,
    pub train_file: PathBuf,
    pub validation_file: Option<PathBuf>,
    pub validation_split: f32,
    pub output_dir: PathBuf,
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub num_train_epochs: f32,
    pub max_steps: Option<usize>,
    pub learning_rate: f32,
    pub lr_scheduler_type: Kind,
    pub warmup_steps: Option<usize>,
    pub warmup_ratio: f32,
    pub max_seq_length: usize,
    pub seed: u64,
    pub method: Method,
    pub lora_r: usize,
    pub lora_alpha: f32,
    pub lora_dropout: f32,
    pub target_modules: Vec<Target>,
    pub save_steps: Option<usize>,
    pub eval_steps: Option<usize>,
    pub logging_steps: usize,
    pub resume_from_checkpoint: Option<PathBuf>,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    pub adam_beta1: f32,
    pub adam_beta2: f32,
    pub adam_epsilon: f32,
    pub gradient_checkpointing: bool,
}

/// Parses `--target_modules`: PEFT module names separated by commas, or `all-linear`.
pub fn parse_targets(spec: &str) -> Result<Vec<Target>> {
    let spec = spec.trim();
    if spec == "all-linear" || spec == "all_linear" {
        return Ok(Target::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let t = Target::from_peft_name(name).ok_or_else(|| {
            let known: Vec<&str> = Target::ALL.iter().map(|t| t.peft_name()).collect();
            TrainError::flag(
                "target_modules",
                format!("`{name}` is not a module; expected some of {} or all-linear", known.join(",")),
            )
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err(TrainError::flag("target_modules", "names no module"));
    }
    out.sort();
    Ok(out)
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let positive = |flag: &'static str, v: usize| {
            if v == 0 {
                Err(TrainError::flag(flag, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("per_device_train_batch_size", self.per_device_train_batch_size)?;
        positive("gradient_accumulation_steps", self.gradient_accumulation_steps)?;
        positive("logging_steps", self.logging_steps)?;
        if self.max_seq_length < 2 {
            return Err(TrainError::flag("max_seq_length", "must be at least 2 (a token and the one it predicts)"));
        }
        if let Some(s) = self.max_steps {
            positive("max_steps", s)?;
        } else if !(self.num_train_epochs > 0.0 && self.num_train_epochs.is_finite()) {
            return Err(TrainError::flag(
                "num_train_epochs",
                format!("must be above 0, got {}", self.num_train_epochs),
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(TrainError::flag("learning_rate", format!("must be above 0, got {}", self.learning_rate)));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(TrainError::flag("warmup_ratio", format!("must be in [0, 1), got {}", self.warmup_ratio)));
        }
        if self.warmup_steps.is_some() && self.warmup_ratio > 0.0 {
            return Err(TrainError::flag("warmup_steps", "give --warmup_steps or --warmup_ratio, not both"));
        }
        if !(0.0..1.0).contains(&self.validation_split) {
            return Err(TrainError::flag(
                "validation_split",
                format!("must be in [0, 1), got {}", self.validation_split),
            ));
        }
        if self.validation_split > 0.0 && self.validation_file.is_some() {
            return Err(TrainError::flag("validation_split", "give --validation_file or --validation_split, not both"));
        }
        if self.eval_steps.is_some() && self.validation_file.is_none() && self.validation_split == 0.0 {
            return Err(TrainError::flag(
                "eval_steps",
                "needs validation data: --validation_file or --validation_split",
            ));
        }
        for (flag, v) in [("save_steps", self.save_steps), ("eval_steps", self.eval_steps)] {
            if let Some(v) = v {
                positive(flag, v)?;
            }
        }
        if self.method == Method::Lora {
            positive("lora_r", self.lora_r)?;
            if self.lora_alpha.is_nan() || self.lora_alpha <= 0.0 {
                return Err(TrainError::flag("lora_alpha", format!("must be above 0, got {}", self.lora_alpha)));
            }
            if !(0.0..1.0).contains(&self.lora_dropout) {
                return Err(TrainError::flag("lora_dropout", format!("must be in [0, 1), got {}", self.lora_dropout)));
            }
        }
        for (flag, beta) in [("adam_beta1", self.adam_beta1), ("adam_beta2", self.adam_beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(TrainError::flag(flag, format!("must be in [0, 1), got {beta}")));
            }
        }
        if !self.train_file.is_file() {
            return Err(TrainError::flag("train_file", format!("{} is not a file", self.train_file.display())));
        }
        if let Some(v) = &self.validation_file {
            if !v.is_file() {
                return Err(TrainError::flag("validation_file", format!("{} is not a file", v.display())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_modules_accept_peft_names_and_all_linear() {
        assert_eq!(parse_targets("v_proj, q_proj").unwrap(), [Target::Q, Target::V]);
        assert_eq!(parse_targets("all-linear").unwrap().len(), 7);
        let err = parse_targets("q_proj,qkv").unwrap_err().to_string();
        assert!(err.starts_with("--target_modules: `qkv` is not a module"), "{err}");
    }
}
