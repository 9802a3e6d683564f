//! luodi's guardrails: PII detection and masking, sensitive-word lexicons, streaming output
//! moderation, and file scanning. A pure library: no I/O except reading lexicon files and the
//! readers/writers the scanner is given.
//!
//! The server builds one [`Guard`] from the `[guard]` config and then, per request:
//!
//! ```
//! use luodi_guard::{Guard, GuardConfig, Outcome};
//!
//! let guard = Guard::new(&GuardConfig::default()).unwrap();
//! let mut pseudonyms = guard.pseudonym_map(); // Some(..) when restore_pseudonyms = true
//! let checked = guard.check_input("我的手机是13800138000", pseudonyms.as_mut());
//! match checked.outcome {
//!     Outcome::Pass(text) => assert_eq!(text, "我的手机是138****8000"),
//!     Outcome::Blocked(reason) => panic!("refused: {reason}"),
//! }
//! // checked.audit: [{subject: "CN_MOBILE", action: mask, rule: "cn_mobile", count: 1}]
//!
//! let mut moderator = guard.stream_moderator();
//! let mut answer = String::new();
//! for token in ["您好，", "有什么", "可以帮您？"] {
//!     answer += &moderator.push(token).unwrap(); // Err(Blocked) ends the stream
//! }
//! answer += &moderator.finish().unwrap();
//! assert_eq!(answer, "您好，有什么可以帮您？");
//! ```
//!
//! With `restore_pseudonyms`, pass the moderated answer through the request's
//! [`PseudonymMap::restore`] (or [`PseudonymMap::restorer`] when streaming) so the user sees
//! their own values again. Files go through [`scan_reader`] and [`redact_stream`].

pub mod actions;
pub mod audit;
pub mod config;
mod error;
mod guard;
pub mod lexicon;
pub mod normalize;
pub mod pii;
pub mod pseudonym;
pub mod scan;
pub mod stream;
mod t2s;

pub use actions::{default_rule, mask_value, redaction, PiiPolicy};
pub use audit::{AuditAction, AuditEvent, Blocked};
pub use config::{
    EntityRule, GuardConfig, InputConfig, LexiconAction, LexiconConfig, OutputConfig, PiiAction, PiiConfig,
};
pub use error::GuardError;
pub use guard::{Checked, Guard, Outcome};
pub use lexicon::{LexMatch, Lexicon, LexiconSource};
pub use pii::{EntityType, Finding, PiiDetector};
pub use pseudonym::{PseudonymKey, PseudonymMap, StreamRestorer};
pub use scan::{redact_stream, scan_reader, Format, Progress, ScanSummary};
pub use stream::StreamModerator;
