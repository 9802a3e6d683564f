//! The GGUF tokenizers against llama.cpp's own output for luodi's two bundled models
//! (`tests/fixtures/llamacpp-greedy.json`): prompt token ids must match exactly, completion
//! ids must decode (whole and streamed) to llama.cpp's text, and text must round-trip.
//!
//! The model files are required: a missing file fails the test with the command that
//! fetches it.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::quantized::gguf_file::Content;
use luodi_engine::detokenizer::IncrementalDecoder;
use luodi_engine::gguf::Metadata;
use luodi_engine::tokenizer::Tokenizer;
use serde_json::Value;

const SMOLLM: (&str, &str) = ("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf");
const GEMMA: (&str, &str) = ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf");

fn luodi_home() -> PathBuf {
    match std::env::var_os("LUODI_HOME") {
        Some(home) => PathBuf::from(home),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".luodi"),
    }
}

fn load((name, file): (&str, &str)) -> Tokenizer {
    let path = luodi_home().join("models").join(name).join(file);
    assert!(path.exists(), "model file {} is missing: run `luodi models fetch {name}` first", path.display());
    let mut f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let content = Content::read(&mut f).unwrap_or_else(|e| panic!("read GGUF {}: {e}", path.display()));
    let started = Instant::now();
    let tok = Tokenizer::from_gguf(&Metadata::new(&content)).expect("tokenizer from GGUF");
    eprintln!("{name}: tokenizer built in {:?} ({} tokens)", started.elapsed(), tok.vocab_size());
    tok
}

fn smollm() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| load(SMOLLM))
}

fn gemma() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| load(GEMMA))
}

fn cases(model: &str) -> Vec<Value> {
    static FIXTURES: OnceLock<Value> = OnceLock::new();
    let fixtures = FIXTURES.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llamacpp-greedy.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        serde_json::from_str(&text).expect("fixture JSON")
    });
    let cases = fixtures["models"][model]["cases"].as_array().unwrap_or_else(|| panic!("no cases for {model}"));
    assert!(!cases.is_empty(), "no cases for {model}");
    cases.clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn check_prompts(model: &str, tok: &Tokenizer) {
    let cases = cases(model);
    let mut failures = Vec::new();
    for case in &cases {
        let prompt = case["rendered_prompt"].as_str().expect("rendered_prompt");
        let want = ids(&case["prompt_tokens"]);
        let got = tok.encode(prompt, true, true).expect("encode");
        if got != want {
            failures.push(format!("{}: {prompt:?}\n  llama.cpp {want:?}\n  luodi     {got:?}", case["id"]));
        }
    }
    eprintln!("{model}: {}/{} prompts match llama.cpp", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "{model}: prompt tokens differ from llama.cpp:\n{}", failures.join("\n"));
}

fn check_completions(model: &str, tok: &Tokenizer) {
    for case in cases(model) {
        let id = &case["id"];
        let tokens = ids(&case["completion_tokens"]);
        let want = case["completion_text"].as_str().expect("completion_text");
        assert_eq!(tok.decode(&tokens, true), want, "{model} {id}: decode");

        let mut dec = IncrementalDecoder::new(true);
        let pieces: Vec<String> =
            tokens.iter().map(|&t| dec.push(tok, t).to_string()).filter(|p| !p.is_empty()).collect();
        // An answer cut mid-character ends without it (llama.cpp's whole decode shows the
        // cut bytes as one U+FFFD; luodi drops them, streamed or not).
        let cut = dec.has_pending();
        let tail = dec.finish();
        let want = if cut { want.strip_suffix('\u{FFFD}').expect("a cut character decodes to U+FFFD") } else { want };
        assert_eq!(pieces.concat() + &tail, want, "{model} {id}: incremental decode");

        // llama.cpp streams the same way: its per-chunk texts are our non-empty pieces.
        let llama_pieces: Vec<&str> = case["completion_token_texts"]
            .as_array()
            .expect("completion_token_texts")
            .iter()
            .map(|p| p.as_str().expect("piece"))
            .filter(|p| !p.is_empty())
            .collect();
        assert_eq!(pieces, llama_pieces, "{model} {id}: streamed pieces");
    }
}

const ROUND_TRIP: &[&str] = &[
    "北京是中国的首都，也是一座历史悠久的城市。请用一句话介绍你自己。",
    "Emoji: 😀👍🏽 🇨🇳 👨‍👩‍👧 🌟✨ done",
    "Mixed: Hello, 世界! café naïve Ελληνικά русский العربية हिन्दी 日本語のテキスト",
    "Digits 0 7 42 3.14159 2024-06-01 1234567890 ٣٤٥ ²",
    "Whitespace:  two   three\t\ttabs\n\nnewlines\n\n\n  indented    \r\n trailing   ",
    "   leading spaces and a trailing newline\n",
    "Code: fn main() { println!(\"{}\", x + 1); } // it's <b>bold</b> <table>",
    "Contractions: I'm, you're, it's, we've, they'll, he'd, 'quoted'",
    "",
];

fn check_round_trip(model: &str, tok: &Tokenizer) {
    for text in ROUND_TRIP {
        let plain = tok.encode(text, false, false).expect("encode");
        assert_eq!(tok.decode(&plain, false), *text, "{model}: round trip of {text:?} via {plain:?}");
        let with_bos = tok.encode(text, true, true).expect("encode");
        assert_eq!(tok.decode(&with_bos, true), *text, "{model}: round trip with BOS of {text:?}");
    }
}

/// The HF `tokenizers` equivalent must give the same ids (for the texts at hand, where no
/// special-token overlap or SPM score tie arises).
fn check_hf_agrees(model: &str, tok: &Tokenizer) {
    let started = Instant::now();
    let hf = tok.hf();
    eprintln!("{model}: HF tokenizer ready in {:?}", started.elapsed());
    let prompts: Vec<String> =
        cases(model).iter().map(|c| c["rendered_prompt"].as_str().expect("prompt").to_string()).collect();
    for text in prompts.iter().map(String::as_str).chain(ROUND_TRIP.iter().copied()) {
        let ours = tok.encode(text, true, true).expect("encode");
        let theirs = hf.encode(text, true).expect("HF encode").get_ids().to_vec();
        assert_eq!(theirs, ours, "{model}: HF tokenizer differs on {text:?}");
    }
}

#[test]
fn smollm2_prompt_tokens_match_llamacpp() {
    check_prompts(SMOLLM.0, smollm());
}

#[test]
fn gemma3_prompt_tokens_match_llamacpp() {
    check_prompts(GEMMA.0, gemma());
}

#[test]
fn smollm2_completions_decode_like_llamacpp() {
    check_completions(SMOLLM.0, smollm());
}

#[test]
fn gemma3_completions_decode_like_llamacpp() {
    check_completions(GEMMA.0, gemma());
}

#[test]
fn smollm2_round_trips() {
    check_round_trip(SMOLLM.0, smollm());
}

#[test]
fn gemma3_round_trips() {
    check_round_trip(GEMMA.0, gemma());
}

#[test]
fn smollm2_hf_tokenizer_agrees() {
    check_hf_agrees(SMOLLM.0, smollm());
}

#[test]
fn gemma3_hf_tokenizer_agrees() {
    check_hf_agrees(GEMMA.0, gemma());
}

#[test]
fn special_tokens_and_metadata() {
    let s = smollm();
    assert_eq!(s.token_id("<|im_start|>"), Some(1));
    assert!(s.is_control(1) && !s.add_bos_token());
    assert_eq!((s.bos_token_id(), s.eos_token_id()), (Some(1), Some(2)));
    // Control tokens are text unless parse_special is set.
    assert_eq!(s.encode("<|im_start|>", false, true).unwrap(), [1]);
    assert!(!s.encode("<|im_start|>", false, false).unwrap().contains(&1));
    for name in ["<|im_end|>", "<|endoftext|>"] {
        assert!(s.eog_token_ids().contains(&s.token_id(name).unwrap()), "{name} ends generation");
    }
    assert_eq!(s.token_bytes(s.token_id("Ġthe").unwrap()), b" the");

    let g = gemma();
    assert_eq!((g.bos_token_id(), g.eos_token_id(), g.add_bos_token()), (Some(2), Some(1), true));
    assert_eq!(g.encode("hi", true, false).unwrap()[0], 2);
    let end_of_turn = g.token_id("<end_of_turn>").unwrap();
    assert!(g.eog_token_ids().contains(&end_of_turn) && g.eog_token_ids().contains(&1));
    assert_eq!(g.token_bytes(g.token_id("<0x0A>").unwrap()), b"\n");
    assert_eq!(g.token_bytes(g.token_id("▁the").unwrap()), b" the");
    // "<start_of_turn>" is control: split out only with parse_special; "\n" is user-defined:
    // always split out.
    let turn = g.token_id("<start_of_turn>").unwrap();
    assert_eq!(g.encode("<start_of_turn>user\n", false, true).unwrap()[0], turn);
    assert!(!g.encode("<start_of_turn>user\n", false, false).unwrap().contains(&turn));
    assert_eq!(g.encode("\n", false, false).unwrap(), [g.token_id("\n").unwrap()]);
    // llama.cpp's list of end-of-generation texts includes "</s>", which makes Gemma 3's
    // HTML strike-through tag a control token: it ends generation and is hidden by
    // skip_special decoding. We copy that.
    let strike = g.token_id("</s>").unwrap();
    assert!(g.is_control(strike) && g.eog_token_ids().contains(&strike));
    assert_eq!(g.decode(&[strike], true), "");
}

/// A long prompt (tens of KB, one SPM fragment spanning many lines) still round-trips.
#[test]
fn long_text_round_trips() {
    let text: String = ROUND_TRIP.iter().cycle().take(600).copied().collect::<Vec<_>>().join(" ");
    for (name, tok) in [(SMOLLM.0, smollm()), (GEMMA.0, gemma())] {
        let t = Instant::now();
        let ids = tok.encode(&text, true, true).unwrap();
        let e = t.elapsed();
        let t = Instant::now();
        let back = tok.decode(&ids, true);
        eprintln!("{name}: {} bytes -> {} tokens in {:?}, decode {:?}", text.len(), ids.len(), e, t.elapsed());
        assert_eq!(back, text, "{name}: long text round trip");
    }
}

/// llama.cpp's ids for input that exercises the corner cases: characters missing from a
/// byte-level vocabulary (they block merging), Unicode whitespace and digits, contractions,
/// overlapping special-token text, user-defined whitespace tokens, literal '▁' and byte-token
/// text. (text, ids with BOS and parse_special, ids without either), captured with
/// llama-cpp-python 0.3.36 (`Llama(vocab_only=True).tokenize`).
type Tricky = (&'static str, &'static [u32], &'static [u32]);

const SMOLLM_TRICKY: &[Tricky] = &[
    ("\u{ac2}\u{b99e9}", &[171, 121, 220, 134, 117, 119], &[171, 121, 220, 134, 117, 119]),
    (
        "a\u{a0}\u{85}b  c\t\t\n\n d",
        &[81, 15442, 141, 223, 82, 216, 265, 1656, 1116, 287],
        &[81, 15442, 141, 223, 82, 216, 265, 1656, 1116, 287],
    ),
    (
        "I'M can't 'S 'll ’s x're",
        &[57, 23, 61, 416, 982, 637, 67, 637, 764, 16107, 99, 1792, 2316],
        &[57, 23, 61, 416, 982, 637, 67, 637, 764, 16107, 99, 1792, 2316],
    ),
    (
        "2024-06-01 3.14159 ٣٤٥ ²½ Ⅻ １２３",
        &[
            34, 32, 34, 36, 29, 32, 38, 29, 32, 33, 216, 35, 30, 33, 36, 33, 37, 41, 216, 164, 113, 164, 114, 164, 115,
            216, 19133, 16738, 216, 173, 223, 121, 216, 8083, 235, 8083, 236, 8083, 237,
        ],
        &[
            34, 32, 34, 36, 29, 32, 38, 29, 32, 33, 216, 35, 30, 33, 36, 33, 37, 41, 216, 164, 113, 164, 114, 164, 115,
            216, 19133, 16738, 216, 173, 223, 121, 216, 8083, 235, 8083, 236, 8083, 237,
        ],
    ),
    (
        "\u{1f600}'m \u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467} \u{1f1e8}\u{1f1f3}",
        &[
            10813, 242, 218, 23, 93, 15107, 235, 118, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117, 15107, 225,
            118, 10813, 225, 128,
        ],
        &[
            10813, 242, 218, 23, 93, 15107, 235, 118, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117, 15107, 225,
            118, 10813, 225, 128,
        ],
    ),
    (
        "<|im_start|>user\n<|im_end|><|im_end|x",
        &[1, 4093, 198, 2, 44, 108, 306, 79, 486, 108, 104],
        &[44, 108, 306, 79, 3738, 108, 46, 4093, 198, 44, 108, 306, 79, 486, 108, 21198, 108, 306, 79, 486, 108, 104],
    ),
    ("   \n\n   \n", &[333, 1004, 198], &[333, 1004, 198]),
    (
        "e\u{301}\u{302} ﬁ İ ß",
        &[85, 151, 219, 151, 220, 40367, 24488, 125, 5549, 249],
        &[85, 151, 219, 151, 220, 40367, 24488, 125, 5549, 249],
    ),
];

const GEMMA_TRICKY: &[Tricky] = &[
    ("</s>", &[2, 212], &[954, 236751, 236813]),
    ("a</s>b", &[2, 236746, 212, 236763], &[236746, 954, 236751, 236813, 236763]),
    (
        "<start_of_turn>user\n  x\t\t\ty\n\n\n",
        &[2, 105, 2364, 107, 138, 236781, 255970, 236762, 109],
        &[236820, 3041, 236779, 1340, 236779, 887, 236813, 2364, 107, 138, 236781, 255970, 236762, 109],
    ),
    (
        "▁▁ <0x41> ▁a",
        &[2, 236743, 236743, 655, 236771, 236781, 236812, 236770, 236813, 236743, 496],
        &[236743, 236743, 655, 236771, 236781, 236812, 236770, 236813, 236743, 496],
    ),
    (
        "北京是中国的首都，也是",
        &[2, 32707, 237026, 110323, 120211, 236900, 15452],
        &[32707, 237026, 110323, 120211, 236900, 15452],
    ),
    (
        "\u{1f600}\u{1f44d}\u{1f3fd} \u{b99e9}",
        &[2, 242398, 240493, 242713, 236743, 480, 423, 405, 407],
        &[242398, 240493, 242713, 236743, 480, 423, 405, 407],
    ),
    ("<table><tr>   </tr></table>", &[2, 168, 173, 139, 181, 176], &[168, 173, 139, 181, 176]),
    ("   leading", &[2, 139, 26016], &[139, 26016]),
    (
        "1234567890 ٣٤٥",
        &[2, 236770, 236778, 236800, 236812, 236810, 236825, 236832, 236828, 236819, 236771, 223766, 242090, 242323],
        &[236770, 236778, 236800, 236812, 236810, 236825, 236832, 236828, 236819, 236771, 223766, 242090, 242323],
    ),
];

fn check_tricky(model: &str, tok: &Tokenizer, cases: &[Tricky]) {
    for &(text, special, plain) in cases {
        assert_eq!(tok.encode(text, true, true).unwrap(), special, "{model}: {text:?} with BOS, parse_special");
        assert_eq!(tok.encode(text, false, false).unwrap(), plain, "{model}: {text:?} plain");
    }
}

#[test]
fn smollm2_tricky_text_matches_llamacpp() {
    check_tricky(SMOLLM.0, smollm(), SMOLLM_TRICKY);
}

#[test]
fn gemma3_tricky_text_matches_llamacpp() {
    check_tricky(GEMMA.0, gemma(), GEMMA_TRICKY);
}
