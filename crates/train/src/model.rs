//! The trainable model: llama and Gemma 3 blocks rebuilt over f32 copies of the GGUF's
//! weights (dequantized once at load, so an adapter is trained against exactly the values a
//! merge later adds to), with a forward pass that keeps what the backward needs and a
//! backward written op by op.

use crate::ops::activation::{self, Gate};
use crate::ops::attention::{self, Shape};
use crate::ops::cross_entropy::{self, IGNORE};
use crate::ops::linear::{self, Linear, Lora};
use crate::ops::{rmsnorm, rope};
use crate::rng::SplitMix64;
use luodi_engine::model::layers::{Rope, RopeStyle};

/// An RMSNorm weight, with its gradient when it is trained (full fine-tuning).
#[derive(Debug, Clone)]
pub struct Norm {
    pub weight: Vec<f32>,
    pub grad: Option<Vec<f32>>,
}

/// The linear layers LoRA can target, by PEFT's module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Target {
    #[serde(rename = "q_proj")]
    Q,
    #[serde(rename = "k_proj")]
    K,
    #[serde(rename = "v_proj")]
    V,
    #[serde(rename = "o_proj")]
    O,
    #[serde(rename = "gate_proj")]
    Gate,
    #[serde(rename = "up_proj")]
    Up,
    #[serde(rename = "down_proj")]
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::O, Target::Gate, Target::Up, Target::Down];

    pub fn peft_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// PEFT's module path inside the block (`self_attn.q_proj`, `mlp.down_proj`).
    pub fn peft_path(self) -> String {
        let group = if matches!(self, Target::Gate | Target::Up | Target::Down) { "mlp" } else { "self_attn" };
        format!("{group}.{}", self.peft_name())
    }

    /// The tensor's name in a GGUF file (`blk.N.<this>.weight`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        }
    }

    pub fn from_peft_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.peft_name() == name)
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: Norm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: Norm,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    /// Gemma 3: per-head norms of q and k, and norms of each sub-layer's output.
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    pub post_attn_norm: Option<Norm>,
    pub post_ffn_norm: Option<Norm>,
    pub rope: Rope,
    pub shape: Shape,
}

impl Block {
    pub fn linear_mut(&mut self, t: Target) -> &mut Linear {
        match t {
            Target::Q => &mut self.q,
            Target::K => &mut self.k,
            Target::V => &mut self.v,
            Target::O => &mut self.o,
            Target::Gate => &mut self.gate,
            Target::Up => &mut self.up,
            Target::Down => &mut self.down,
        }
    }

    pub fn linear(&self, t: Target) -> &Linear {
        match t {
            Target::Q => &self.q,
            Target::K => &self.k,
            Target::V => &self.v,
            Target::O => &self.o,
            Target::Gate => &self.gate,
            Target::Up => &self.up,
            Target::Down => &self.down,
        }
    }

    fn norms_mut(&mut self) -> impl Iterator<Item = &mut Norm> {
        [Some(&mut self.attn_norm), Some(&mut self.ffn_norm)]
            .into_iter()
            .chain([
                self.q_norm.as_mut(),
                self.k_norm.as_mut(),
                self.post_attn_norm.as_mut(),
                self.post_ffn_norm.as_mut(),
            ])
            .flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gemma3,
}

#[derive(Debug, Clone)]
pub struct Dims {
    pub arch: Arch,
    pub hidden: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rms_eps: f32,
    /// Gemma multiplies embeddings by sqrt(hidden); llama by 1.
    pub embed_scale: f32,
    pub gate: Gate,
}

pub struct Model {
    pub dims: Dims,
    /// `[vocab, hidden]`; also the output projection when `output` is absent (tied).
    pub embed: Vec<f32>,
    pub embed_grad: Option<Vec<f32>>,
    pub output: Option<Linear>,
    pub blocks: Vec<Block>,
    pub final_norm: Norm,
}

/// One micro-batch: sequences laid end to end, with their positions and next-token labels.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub tokens: Vec<u32>,
    pub positions: Vec<usize>,
    /// `(first row, length)` of each sequence.
    pub seqs: Vec<(usize, usize)>,
    /// Per row, the token it must predict, or [`IGNORE`].
    pub labels: Vec<u32>,
}

impl Batch {
    /// Appends one sequence; `trained[i]` says whether token `i` is a target (its
    /// prediction from token `i - 1` is in the loss).
    pub fn push(&mut self, tokens: &[u32], trained: &[bool]) {
        let start = self.tokens.len();
        self.seqs.push((start, tokens.len()));
        self.tokens.extend_from_slice(tokens);
        self.positions.extend(0..tokens.len());
        for i in 0..tokens.len() {
            let next = i + 1;
            self.labels.push(if next < tokens.len() && trained[next] { tokens[next] } else { IGNORE });
        }
    }

    pub fn rows(&self) -> usize {
        self.tokens.len()
    }

    pub fn labelled(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE).count()
    }
}

/// What one block's forward keeps for its backward.
struct Tape {
    x: Vec<f32>,
    rstd1: Vec<f32>,
    h1: Vec<f32>,
    q_lin: linear::Saved,
    k_lin: linear::Saved,
    v_lin: linear::Saved,
    /// Gemma: q and k before their per-head norm, and those norms' 1/rms.
    q_pre: Vec<f32>,
    k_pre: Vec<f32>,
    rstd_q: Vec<f32>,
    rstd_k: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: attention::Saved,
    ao: Vec<f32>,
    o_lin: linear::Saved,
    o_pre: Vec<f32>,
    rstd_o: Vec<f32>,
    xm: Vec<f32>,
    rstd2: Vec<f32>,
    h2: Vec<f32>,
    gate_lin: linear::Saved,
    up_lin: linear::Saved,
    g: Vec<f32>,
    u: Vec<f32>,
    ff: Vec<f32>,
    down_lin: linear::Saved,
    d_pre: Vec<f32>,
    rstd_d: Vec<f32>,
}

fn norm_forward(x: &[f32], n: &Norm, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0.0; x.len()];
    let mut r = vec![0.0; x.len() / n.weight.len()];
    rmsnorm::forward(x, &n.weight, eps, &mut y, &mut r);
    (y, r)
}

/// `dx += d(norm)/dx · dy`, and the weight's gradient when trained.
fn norm_backward(x: &[f32], n: &mut Norm, rstd: &[f32], dy: &[f32], dx: &mut [f32]) {
    rmsnorm::backward(x, &n.weight, rstd, dy, dx, n.grad.as_deref_mut());
}

fn add(into: &mut [f32], from: &[f32]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

impl Block {
    fn forward(
        &self,
        x: Vec<f32>,
        batch: &Batch,
        (eps, kind): (f32, Gate),
        mut rng: Option<&mut SplitMix64>,
    ) -> (Vec<f32>, Tape) {
        let rows = batch.rows();
        let sh = self.shape;
        let (qw, kw) = (sh.n_heads * sh.head_dim, sh.n_kv_heads * sh.head_dim);
        let (h1, rstd1) = norm_forward(&x, &self.attn_norm, eps);
        let mut q = vec![0.0; rows * qw];
        let mut k = vec![0.0; rows * kw];
        let mut v = vec![0.0; rows * kw];
        let q_lin = self.q.forward(&h1, rows, &mut q, rng.as_deref_mut());
        let k_lin = self.k.forward(&h1, rows, &mut k, rng.as_deref_mut());
        let v_lin = self.v.forward(&h1, rows, &mut v, rng.as_deref_mut());
        let (mut q_pre, mut k_pre, mut rstd_q, mut rstd_k) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            let (qn_out, rq) = norm_forward(&q, qn, eps);
            let (kn_out, rk) = norm_forward(&k, kn, eps);
            q_pre = std::mem::replace(&mut q, qn_out);
            k_pre = std::mem::replace(&mut k, kn_out);
            (rstd_q, rstd_k) = (rq, rk);
        }
        rope::rotate(&self.rope, &mut q, qw, sh.head_dim, &batch.positions, false);
        rope::rotate(&self.rope, &mut k, kw, sh.head_dim, &batch.positions, false);
        let mut ao = vec![0.0; rows * qw];
        let attn = attention::forward(&sh, &batch.seqs, &q, &k, &v, &mut ao);
        let hidden = x.len() / rows;
        let mut o = vec![0.0; rows * hidden];
        let o_lin = self.o.forward(&ao, rows, &mut o, rng.as_deref_mut());
        let (mut o_pre, mut rstd_o) = (Vec::new(), Vec::new());
        if let Some(pn) = &self.post_attn_norm {
            let (normed, r) = norm_forward(&o, pn, eps);
            o_pre = std::mem::replace(&mut o, normed);
            rstd_o = r;
        }
        let mut xm = x.clone();
        add(&mut xm, &o);
        let (h2, rstd2) = norm_forward(&xm, &self.ffn_norm, eps);
        let ffn = self.gate.out;
        let mut g = vec![0.0; rows * ffn];
        let mut u = vec![0.0; rows * ffn];
        let gate_lin = self.gate.forward(&h2, rows, &mut g, rng.as_deref_mut());
        let up_lin = self.up.forward(&h2, rows, &mut u, rng.as_deref_mut());
        let mut ff = vec![0.0; rows * ffn];
        activation::forward(kind, &g, &u, &mut ff);
        let mut dn = vec![0.0; rows * hidden];
        let down_lin = self.down.forward(&ff, rows, &mut dn, rng);
        let (mut d_pre, mut rstd_d) = (Vec::new(), Vec::new());
        if let Some(pn) = &self.post_ffn_norm {
            let (normed, r) = norm_forward(&dn, pn, eps);
            d_pre = std::mem::replace(&mut dn, normed);
            rstd_d = r;
        }
        let mut out = xm.clone();
        add(&mut out, &dn);
        let tape = Tape {
            x,
            rstd1,
            h1,
            q_lin,
            k_lin,
            v_lin,
            q_pre,
            k_pre,
            rstd_q,
            rstd_k,
            q,
            k,
            v,
            attn,
            ao,
            o_lin,
            o_pre,
            rstd_o,
            xm,
            rstd2,
            h2,
            gate_lin,
            up_lin,
            g,
            u,
            ff,
            down_lin,
            d_pre,
            rstd_d,
        };
        (out, tape)
    }

    /// Takes the gradient at the block's output; returns it at the block's input (or an
    /// empty vector when `need_dx` is false: below the first trained parameter nothing
    /// needs it).
    fn backward(&mut self, t: &Tape, dout: Vec<f32>, batch: &Batch, kind: Gate, need_dx: bool) -> Vec<f32> {
        let rows = batch.rows();
        let sh = self.shape;
        let (qw, kw) = (sh.n_heads * sh.head_dim, sh.n_kv_heads * sh.head_dim);
        let hidden = dout.len() / rows;
        // out = xm + post_ffn(down(ff))
        let mut dxm = dout.clone();
        let d_dn = match &mut self.post_ffn_norm {
            Some(pn) => {
                let mut d = vec![0.0; dout.len()];
                norm_backward(&t.d_pre, pn, &t.rstd_d, &dout, &mut d);
                d
            }
            None => dout,
        };
        let ffn = self.gate.out;
        let mut dff = vec![0.0; rows * ffn];
        self.down.backward(&t.ff, &t.down_lin, &d_dn, rows, Some(&mut dff));
        let (mut dg, mut du) = (vec![0.0; rows * ffn], vec![0.0; rows * ffn]);
        activation::backward(kind, &t.g, &t.u, &dff, &mut dg, &mut du);
        drop(dff);
        let mut dh2 = vec![0.0; rows * hidden];
        self.gate.backward(&t.h2, &t.gate_lin, &dg, rows, Some(&mut dh2));
        self.up.backward(&t.h2, &t.up_lin, &du, rows, Some(&mut dh2));
        norm_backward(&t.xm, &mut self.ffn_norm, &t.rstd2, &dh2, &mut dxm);
        // xm = x + post_attn(o(attention))
        let d_o = match &mut self.post_attn_norm {
            Some(pn) => {
                let mut d = vec![0.0; dxm.len()];
                norm_backward(&t.o_pre, pn, &t.rstd_o, &dxm, &mut d);
                d
            }
            None => dxm.clone(),
        };
        let mut dao = vec![0.0; rows * qw];
        self.o.backward(&t.ao, &t.o_lin, &d_o, rows, Some(&mut dao));
        let (mut dq, mut dk, mut dv) = (vec![0.0; rows * qw], vec![0.0; rows * kw], vec![0.0; rows * kw]);
        attention::backward(&sh, &batch.seqs, &t.q, &t.k, &t.v, &t.attn, &dao, (&mut dq, &mut dk, &mut dv));
        rope::rotate(&self.rope, &mut dq, qw, sh.head_dim, &batch.positions, true);
        rope::rotate(&self.rope, &mut dk, kw, sh.head_dim, &batch.positions, true);
        if let (Some(qn), Some(kn)) = (&mut self.q_norm, &mut self.k_norm) {
            let mut dq_pre = vec![0.0; dq.len()];
            norm_backward(&t.q_pre, qn, &t.rstd_q, &dq, &mut dq_pre);
            let mut dk_pre = vec![0.0; dk.len()];
            norm_backward(&t.k_pre, kn, &t.rstd_k, &dk, &mut dk_pre);
            (dq, dk) = (dq_pre, dk_pre);
        }
        if !need_dx {
            // Nothing below is trained (LoRA's first block over a frozen embedding): the
            // input gradient, the largest product here, is skipped.
            self.q.backward(&t.h1, &t.q_lin, &dq, rows, None);
            self.k.backward(&t.h1, &t.k_lin, &dk, rows, None);
            self.v.backward(&t.h1, &t.v_lin, &dv, rows, None);
            return Vec::new();
        }
        let mut dh1 = vec![0.0; rows * hidden];
        self.q.backward(&t.h1, &t.q_lin, &dq, rows, Some(&mut dh1));
        self.k.backward(&t.h1, &t.k_lin, &dk, rows, Some(&mut dh1));
        self.v.backward(&t.h1, &t.v_lin, &dv, rows, Some(&mut dh1));
        norm_backward(&t.x, &mut self.attn_norm, &t.rstd1, &dh1, &mut dxm);
        dxm
    }
}

impl Model {
    /// Rebuilds the model from a GGUF file whose configuration the engine has read.
    pub fn load(path: &std::path::Path, config: &luodi_engine::model::ModelConfig) -> Result<Self, TrainError> {
        use candle_core::Device;
        use luodi_engine::model::layers::TensorSource;
        let arch = match config.architecture.as_str() {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            other => return Err(luodi_engine::EngineError::UnsupportedArchitecture(other.to_string()).into()),
        };
        let (mut file, content) = luodi_engine::model::read_header(path)?;
        let device = Device::Cpu;
        let mut src = TensorSource { content: &content, file: &mut file, device: &device };
        let mut f32s = |name: &str| -> Result<Vec<f32>, TrainError> {
            let t = src.qtensor(name)?.dequantize(&device)?;
            Ok(t.flatten_all().and_then(|t| t.to_vec1::<f32>())?)
        };
        let (d, hd) = (config.hidden, config.head_dim);
        let (qw, kw) = (config.n_heads * hd, config.n_kv_heads * hd);
        let norm = |w: Vec<f32>| Norm { weight: w, grad: None };
        let embed = f32s("token_embd.weight")?;
        let vocab = embed.len() / d;
        let gemma = arch == Arch::Gemma3;
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            let (rope, window) = if gemma {
                let global = (i + 1) % luodi_engine::model::SLIDING_WINDOW_PATTERN == 0;
                let base = if global { config.rope_base } else { luodi_engine::model::LOCAL_ROPE_BASE };
                (Rope::new(hd, base, RopeStyle::Halves), if global { None } else { config.sliding_window })
            } else {
                (Rope::new(hd, config.rope_base, RopeStyle::Interleaved), None)
            };
            let opt_norm = |src_name: &str, f: &mut dyn FnMut(&str) -> Result<Vec<f32>, TrainError>| {
                if gemma {
                    f(&p(src_name)).map(|w| Some(norm(w)))
                } else {
                    Ok(None)
                }
            };
            blocks.push(Block {
                attn_norm: norm(f32s(&p("attn_norm"))?),
                q: Linear::frozen(qw, d, f32s(&p("attn_q"))?),
                k: Linear::frozen(kw, d, f32s(&p("attn_k"))?),
                v: Linear::frozen(kw, d, f32s(&p("attn_v"))?),
                o: Linear::frozen(d, qw, f32s(&p("attn_output"))?),
                ffn_norm: norm(f32s(&p("ffn_norm"))?),
                gate: Linear::frozen(config.ffn, d, f32s(&p("ffn_gate"))?),
                up: Linear::frozen(config.ffn, d, f32s(&p("ffn_up"))?),
                down: Linear::frozen(d, config.ffn, f32s(&p("ffn_down"))?),
                q_norm: opt_norm("attn_q_norm", &mut f32s)?,
                k_norm: opt_norm("attn_k_norm", &mut f32s)?,
                post_attn_norm: opt_norm("post_attention_norm", &mut f32s)?,
                post_ffn_norm: opt_norm("post_ffw_norm", &mut f32s)?,
                rope,
                shape: Shape {
                    n_heads: config.n_heads,
                    n_kv_heads: config.n_kv_heads,
                    head_dim: hd,
                    scale: 1.0 / (hd as f32).sqrt(),
                    window,
                },
            });
        }
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(Linear::frozen(vocab, d, f32s("output.weight")?))
        } else {
            None
        };
        let final_norm = norm(f32s("output_norm.weight")?);
        let dims = Dims {
            arch,
            hidden: d,
            ffn: config.ffn,
            vocab,
            rms_eps: config.rms_eps as f32,
            embed_scale: if gemma { (d as f32).sqrt() } else { 1.0 },
            gate: if gemma { Gate::GeluTanh } else { Gate::Silu },
        };
        Ok(Self { dims, embed, embed_grad: None, output, blocks, final_norm })
    }

    /// Adds LoRA factors to `targets` in every block (drawing A from `rng`, in block order).
    pub fn add_lora(&mut self, targets: &[Target], r: usize, alpha: f32, dropout: f32, rng: &mut SplitMix64) {
        for block in &mut self.blocks {
            for &t in targets {
                let l = block.linear_mut(t);
                l.lora = Some(Lora::new(l.out, l.inp, r, alpha, dropout, rng));
            }
        }
    }

    /// Makes every weight trainable (full fine-tuning).
    pub fn train_all(&mut self) {
        self.embed_grad = Some(vec![0.0; self.embed.len()]);
        if let Some(o) = &mut self.output {
            o.grad = Some(vec![0.0; o.weight.len()]);
        }
        self.final_norm.grad = Some(vec![0.0; self.final_norm.weight.len()]);
        for block in &mut self.blocks {
            for t in Target::ALL {
                let l = block.linear_mut(t);
                l.grad = Some(vec![0.0; l.weight.len()]);
            }
            for n in block.norms_mut() {
                n.grad = Some(vec![0.0; n.weight.len()]);
            }
        }
    }

    /// Visits every trained tensor as `(name, values, gradient)`, always in the same order
    /// (the optimizer's state and checkpoints rely on it). LoRA tensors carry PEFT's names.
    pub fn visit_params(&mut self, mut f: impl FnMut(&str, &mut [f32], &mut [f32])) {
        if let Some(g) = &mut self.embed_grad {
            f("token_embd.weight", &mut self.embed, g);
        }
        if let Some(o) = &mut self.output {
            if let Some(g) = &mut o.grad {
                f("output.weight", &mut o.weight, g);
            }
        }
        if let Some(g) = &mut self.final_norm.grad {
            f("output_norm.weight", &mut self.final_norm.weight, g);
        }
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for t in Target::ALL {
                let l = block.linear_mut(t);
                if let Some(g) = &mut l.grad {
                    f(&format!("blk.{i}.{}.weight", t.gguf_name()), &mut l.weight, g);
                }
                if let Some(lora) = &mut l.lora {
                    let base = format!("base_model.model.model.layers.{i}.{}", t.peft_path());
                    f(&format!("{base}.lora_A.weight"), &mut lora.a, &mut lora.grad_a);
                    f(&format!("{base}.lora_B.weight"), &mut lora.b, &mut lora.grad_b);
                }
            }
            let names = ["attn_norm", "ffn_norm", "attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"];
            let norms = [
                Some(&mut block.attn_norm),
                Some(&mut block.ffn_norm),
                block.q_norm.as_mut(),
                block.k_norm.as_mut(),
                block.post_attn_norm.as_mut(),
                block.post_ffn_norm.as_mut(),
            ];
            for (name, n) in names.iter().zip(norms) {
                if let Some(n) = n {
                    if let Some(g) = &mut n.grad {
                        f(&format!("blk.{i}.{name}.weight"), &mut n.weight, g);
                    }
                }
            }
        }
    }

    pub fn trainable_parameters(&mut self) -> usize {
        let mut n = 0;
        self.visit_params(|_, p, _| n += p.len());
        n
    }

    pub fn zero_grads(&mut self) {
        self.visit_params(|_, _, g| g.fill(0.0));
    }

    fn embed_rows(&self, tokens: &[u32]) -> Vec<f32> {
        let d = self.dims.hidden;
        let mut x = Vec::with_capacity(tokens.len() * d);
        for &t in tokens {
            x.extend(self.embed[t as usize * d..(t as usize + 1) * d].iter().map(|v| v * self.dims.embed_scale));
        }
        x
    }

    fn head(&self) -> &[f32] {
        self.output.as_ref().map_or(&self.embed, |o| &o.weight)
    }

    /// Runs the batch forward; with `grad_scale`, also backward, adding
    /// `grad_scale * d(summed loss)` into every trained tensor's gradient. `rng` draws
    /// dropout masks (training only). `recompute` keeps only each block's input and redoes
    /// the block's forward during the backward (activation checkpointing).
    pub fn forward_backward(
        &mut self,
        batch: &Batch,
        grad_scale: Option<f32>,
        mut rng: Option<&mut SplitMix64>,
        recompute: bool,
    ) -> cross_entropy::Output {
        let (eps, gate) = (self.dims.rms_eps, self.dims.gate);
        let d = self.dims.hidden;
        let mut x = self.embed_rows(&batch.tokens);
        let training = grad_scale.is_some();
        let mut tapes = Vec::new();
        let mut inputs = Vec::new();
        for block in &self.blocks {
            let state = rng.as_ref().map(|r| r.state());
            let input = (training && recompute).then(|| x.clone());
            let (out, tape) = block.forward(x, batch, (eps, gate), rng.as_deref_mut());
            if training {
                if recompute {
                    inputs.push((input.unwrap_or_default(), state));
                } else {
                    tapes.push(tape);
                }
            }
            x = out;
        }
        let (hf, rstd_f) = norm_forward(&x, &self.final_norm, eps);
        let Some(scale) = grad_scale else {
            return cross_entropy::forward_backward(&hf, self.head(), d, &batch.labels, None);
        };
        let mut dhf = vec![0.0; hf.len()];
        let out = {
            let (table, dtable) = match &mut self.output {
                Some(o) => (&o.weight[..], o.grad.as_deref_mut()),
                None => (&self.embed[..], self.embed_grad.as_deref_mut()),
            };
            cross_entropy::forward_backward(&hf, table, d, &batch.labels, Some((scale, &mut dhf, dtable)))
        };
        let mut dx = vec![0.0; x.len()];
        norm_backward(&x, &mut self.final_norm, &rstd_f, &dhf, &mut dx);
        drop((x, hf, dhf));
        let below_trained = self.embed_grad.is_some();
        for i in (0..self.blocks.len()).rev() {
            let tape = if recompute {
                let (input, state) = inputs.pop().expect("one saved input per block");
                let mut replay = state.map(SplitMix64::new);
                self.blocks[i].forward(input, batch, (eps, gate), replay.as_mut()).1
            } else {
                tapes.pop().expect("one tape per block")
            };
            let need_dx = i > 0 || below_trained;
            dx = self.blocks[i].backward(&tape, dx, batch, gate, need_dx);
        }
        if let Some(g) = &mut self.embed_grad {
            let s = self.dims.embed_scale;
            for (row, &t) in dx.chunks_exact(d).zip(&batch.tokens) {
                g[t as usize * d..(t as usize + 1) * d].iter_mut().zip(row).for_each(|(o, v)| *o += v * s);
            }
        }
        out
    }

    /// Next-token logits after the last token of `tokens` (one sequence), for comparisons
    /// with the serving engine and for tests.
    pub fn last_logits(&mut self, tokens: &[u32]) -> Vec<f32> {
        let mut batch = Batch::default();
        batch.push(tokens, &vec![false; tokens.len()]);
        let eps = self.dims.rms_eps;
        let d = self.dims.hidden;
        let mut x = self.embed_rows(&batch.tokens);
        for block in &self.blocks {
            x = block.forward(x, &batch, (eps, self.dims.gate), None).0;
        }
        let (hf, _) = norm_forward(&x[(tokens.len() - 1) * d..], &self.final_norm, eps);
        let mut logits = vec![0.0; self.dims.vocab];
        crate::gemm::matmul(
            &mut logits,
            false,
            &hf,
            crate::gemm::Op::N,
            self.head(),
            crate::gemm::Op::T,
            (1, self.dims.vocab, d),
            1.0,
        );
        logits
    }
}

use crate::error::TrainError;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_gradient, pseudo_random};

    /// A two-block model with random weights, small enough for finite differences.
    fn tiny(arch: Arch) -> Model {
        let (d, ffn, vocab, nh, nkv, hd) = (8, 12, 10, 2, 1, 4);
        let gemma = arch == Arch::Gemma3;
        let seed = std::cell::Cell::new(100);
        let w = |n: usize, s: f32| {
            seed.set(seed.get() + 1);
            pseudo_random(n, seed.get()).iter().map(|v| v * s).collect::<Vec<f32>>()
        };
        let norm = |n: usize| Norm { weight: w(n, 0.3).iter().map(|v| 1.0 + v).collect(), grad: None };
        let mut blocks = Vec::new();
        for i in 0..2 {
            let style = if gemma { RopeStyle::Halves } else { RopeStyle::Interleaved };
            blocks.push(Block {
                attn_norm: norm(d),
                q: Linear::frozen(nh * hd, d, w(nh * hd * d, 0.5)),
                k: Linear::frozen(nkv * hd, d, w(nkv * hd * d, 0.5)),
                v: Linear::frozen(nkv * hd, d, w(nkv * hd * d, 0.5)),
                o: Linear::frozen(d, nh * hd, w(d * nh * hd, 0.5)),
                ffn_norm: norm(d),
                gate: Linear::frozen(ffn, d, w(ffn * d, 0.5)),
                up: Linear::frozen(ffn, d, w(ffn * d, 0.5)),
                down: Linear::frozen(d, ffn, w(d * ffn, 0.5)),
                q_norm: gemma.then(|| norm(hd)),
                k_norm: gemma.then(|| norm(hd)),
                post_attn_norm: gemma.then(|| norm(d)),
                post_ffn_norm: gemma.then(|| norm(d)),
                rope: Rope::new(hd, 10_000.0, style),
                shape: Shape {
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                    scale: 0.5,
                    window: (gemma && i == 0).then_some(2),
                },
            });
        }
        Model {
            dims: Dims {
                arch,
                hidden: d,
                ffn,
                vocab,
                rms_eps: 1e-6,
                embed_scale: if gemma { (d as f32).sqrt() } else { 1.0 },
                gate: if gemma { Gate::GeluTanh } else { Gate::Silu },
            },
            embed: w(vocab * d, 0.7),
            embed_grad: None,
            output: None,
            blocks,
            final_norm: norm(d),
        }
    }

    fn batch() -> Batch {
        let mut b = Batch::default();
        b.push(&[1, 4, 2, 9, 3], &[false, false, true, true, true]);
        b.push(&[7, 0, 5], &[true, true, true]);
        b
    }

    /// Checks every trained tensor's gradient against finite differences of the loss.
    fn check_all(mut model: Model, recompute: bool) {
        let b = batch();
        model.zero_grads();
        model.forward_backward(&b, Some(1.0), None, recompute);
        let mut params = Vec::new();
        model.visit_params(|name, p, g| params.push((name.to_string(), p.to_vec(), g.to_vec())));
        assert!(!params.is_empty());
        let model = std::cell::RefCell::new(model);
        for (k, (name, p, g)) in params.iter().enumerate() {
            check_gradient(name, p, g, |v| {
                let mut model = model.borrow_mut();
                let mut i = 0;
                model.visit_params(|_, p, _| {
                    if i == k {
                        p.copy_from_slice(v);
                    }
                    i += 1;
                });
                let loss = model.forward_backward(&b, None, None, false).loss_sum;
                let mut i = 0;
                model.visit_params(|_, q, _| {
                    if i == k {
                        q.copy_from_slice(p);
                    }
                    i += 1;
                });
                loss
            });
        }
    }

    fn with_lora(arch: Arch) -> Model {
        let mut m = tiny(arch);
        m.add_lora(&Target::ALL, 2, 4.0, 0.0, &mut SplitMix64::new(5));
        // B starts at zero; give it values so A's gradient is not trivially zero.
        let mut s = 50;
        for block in &mut m.blocks {
            for t in Target::ALL {
                s += 1;
                let lora = block.linear_mut(t).lora.as_mut().unwrap();
                lora.b = pseudo_random(lora.b.len(), s).iter().map(|v| v * 0.3).collect();
            }
        }
        m
    }

    #[test]
    fn llama_lora_gradients_match_finite_differences() {
        check_all(with_lora(Arch::Llama), false);
    }

    #[test]
    fn gemma_lora_gradients_match_finite_differences() {
        check_all(with_lora(Arch::Gemma3), false);
    }

    #[test]
    fn full_fine_tuning_gradients_match_finite_differences() {
        for arch in [Arch::Llama, Arch::Gemma3] {
            let mut m = tiny(arch);
            m.train_all();
            check_all(m, false);
        }
    }

    #[test]
    fn recomputed_activations_give_the_same_gradients() {
        let b = batch();
        let grads = |recompute: bool| {
            let mut m = with_lora(Arch::Llama);
            m.blocks.iter_mut().for_each(|blk| blk.q.lora.as_mut().unwrap().dropout = 0.3);
            m.forward_backward(&b, Some(1.0), Some(&mut SplitMix64::new(9)), recompute);
            let mut all = Vec::new();
            m.visit_params(|_, _, g| all.extend_from_slice(g));
            all
        };
        assert_eq!(grads(false), grads(true));
    }

    #[test]
    fn a_fresh_adapter_leaves_the_model_unchanged() {
        let mut base = tiny(Arch::Llama);
        let before = base.last_logits(&[1, 4, 2]);
        base.add_lora(&[Target::Q, Target::V], 4, 8.0, 0.0, &mut SplitMix64::new(1));
        assert_eq!(base.last_logits(&[1, 4, 2]), before);
    }
}
