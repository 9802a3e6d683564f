//! The server's seam types to the engine's, and the engine's errors to the server's.

use luodi_engine::batch::BatchConfig;
use luodi_engine::{ChatMessage, EngineError, FinishReason as EngineFinish, Prompt as EnginePrompt, SamplingParams};
use luodi_server::backend::{BackendError, Prompt, Sampling};
use luodi_server::config::BatchLimits;

pub fn prompt(p: Prompt) -> EnginePrompt {
    match p {
        Prompt::Chat(messages) => {
            EnginePrompt::Chat(messages.into_iter().map(|m| ChatMessage::new(m.role, m.content)).collect())
        }
        Prompt::Raw(text) => EnginePrompt::Raw(text),
        Prompt::Tokens(ids) => EnginePrompt::Tokens(ids),
    }
}

pub fn sampling(s: &Sampling) -> SamplingParams {
    SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repetition_penalty: s.repetition_penalty,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
        seed: s.seed,
        top_logprobs: s.top_logprobs,
        ..SamplingParams::default()
    }
}

/// The engine's finish reason; `cut_by_deadline` turns a cancellation into `length`.
pub fn finish_reason(r: EngineFinish, cut_by_deadline: bool) -> luodi_server::backend::FinishReason {
    use luodi_server::backend::FinishReason;
    match r {
        EngineFinish::Stop => FinishReason::Stop,
        EngineFinish::Length => FinishReason::Length,
        // Cut short by the deadline: the answer ends as if max_tokens were reached.
        EngineFinish::Cancelled if cut_by_deadline => FinishReason::Length,
        EngineFinish::Cancelled => FinishReason::Cancelled,
    }
}

pub fn error(e: EngineError) -> BackendError {
    match e {
        EngineError::ContextOverflow { prompt_tokens, max_tokens, context_length } => {
            BackendError::ContextOverflow { prompt_tokens, max_tokens, context_length }
        }
        EngineError::InvalidParameter { field, message } => {
            BackendError::InvalidParameter { field: field.to_string(), message: message.to_string() }
        }
        EngineError::Template(message) => BackendError::Template(message),
        e @ EngineError::KvBudgetExceeded { .. } => BackendError::KvBudgetExceeded(e.to_string()),
        other => BackendError::Internal(other.to_string()),
    }
}

/// The server's checked batch limits as the engine's batch configuration.
pub fn batch_config(limits: BatchLimits) -> BatchConfig {
    BatchConfig {
        max_num_seqs: limits.max_num_seqs,
        max_batch_tokens: limits.max_batch_tokens,
        kv_memory_bytes: limits.kv_memory_bytes,
        block_size: 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_their_meaning() {
        let e = error(EngineError::ContextOverflow { prompt_tokens: 9, max_tokens: 5, context_length: 10 });
        assert_eq!(e, BackendError::ContextOverflow { prompt_tokens: 9, max_tokens: 5, context_length: 10 });
        let e = error(EngineError::KvBudgetExceeded { tokens: 100, capacity: 10 });
        assert!(matches!(&e, BackendError::KvBudgetExceeded(m) if m.contains("100") && m.contains("10")), "{e:?}");
        assert!(matches!(error(EngineError::Template("bad".into())), BackendError::Template(m) if m == "bad"));
        assert_eq!(finish_reason(EngineFinish::Cancelled, true), luodi_server::backend::FinishReason::Length);
        assert_eq!(finish_reason(EngineFinish::Cancelled, false), luodi_server::backend::FinishReason::Cancelled);
    }
}
