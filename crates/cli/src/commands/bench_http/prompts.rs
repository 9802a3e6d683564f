//! The conversations a benchmark sends: a prompts file (plain text or JSONL) or the built-in
//! customer-service questions. Each prompt is a list of chat messages without the system one,
//! which the request adds from --system.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// One conversation: OpenAI chat messages (`{"role", "content"}` objects).
pub type Prompt = Vec<Value>;

/// Short customer-service questions, English and Chinese alternating, so a default run
/// exercises both scripts (and multi-byte UTF-8 in the streams).
const BUILT_IN: [&str; 32] = [
    "How do I reset my online banking password?",
    "我的信用卡账单什么时候出？",
    "What are your customer service hours?",
    "如何修改我的收货地址？",
    "My order hasn't arrived yet. What should I do?",
    "退货需要多长时间才能退款？",
    "Can I change my flight to an earlier date?",
    "请问你们支持哪些支付方式？",
    "How do I cancel my subscription?",
    "我的账户被锁定了，怎么解锁？",
    "Is there a fee for international transfers?",
    "怎么开具电子发票？",
    "Why was my card declined at the store?",
    "快递显示已签收，但我没有收到包裹。",
    "How can I update the phone number on my account?",
    "会员积分可以兑换什么？",
    "Do you offer a student discount?",
    "如何申请提高信用卡额度？",
    "What is your return policy for opened items?",
    "订单可以合并发货吗？",
    "How long does standard shipping take?",
    "忘记了支付密码怎么办？",
    "Can I pick up my order in a store?",
    "为什么我的优惠券不能使用？",
    "How do I report a lost credit card?",
    "我想投诉一位客服人员的服务态度。",
    "Where can I find my account statement?",
    "商品降价了，可以申请价格保护吗？",
    "How do I set up two-factor authentication?",
    "请帮我查询一下我的物流信息。",
    "Can I get a refund if my package arrived damaged?",
    "如何注销我的账户？",
];

pub fn built_in() -> Vec<Prompt> {
    BUILT_IN.iter().map(|q| vec![user(q)]).collect()
}

/// Reads a prompts file: JSONL when its first non-space character is `{`, else one user message
/// per non-blank line.
pub fn load(path: &Path) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--prompts: reading {}", path.display()))?;
    parse(&text).with_context(|| format!("--prompts {}", path.display()))
}

pub fn parse(text: &str) -> Result<Vec<Prompt>> {
    let jsonl = text.trim_start().starts_with('{');
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if jsonl {
            prompts.push(parse_jsonl_line(line).with_context(|| format!("line {}", i + 1))?);
        } else {
            prompts.push(vec![user(line)]);
        }
    }
    if prompts.is_empty() {
        bail!("no prompts: the file is empty (expected one message per line, or JSONL)");
    }
    Ok(prompts)
}

fn parse_jsonl_line(line: &str) -> Result<Prompt> {
    const EXPECTED: &str = r#"expected {"messages": [{"role": ..., "content": ...}, ...]} or {"prompt": "..."}"#;
    let value: Value = serde_json::from_str(line).with_context(|| format!("not valid JSON; {EXPECTED}"))?;
    if let Some(messages) = value.get("messages") {
        let Some(list) = messages.as_array().filter(|l| !l.is_empty()) else {
            bail!("\"messages\" must be a non-empty array; {EXPECTED}");
        };
        for (j, m) in list.iter().enumerate() {
            if m.get("role").and_then(Value::as_str).is_none() {
                bail!("messages[{j}] has no string \"role\"; {EXPECTED}");
            }
        }
        return Ok(list.clone());
    }
    match value.get("prompt") {
        Some(Value::String(p)) => Ok(vec![user(p)]),
        _ => bail!("{EXPECTED}"),
    }
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_set_has_both_languages() {
        let p = built_in();
        assert_eq!(p.len(), 32);
        assert!(p.iter().any(|m| m[0]["content"].as_str().is_some_and(|s| s.contains("密码"))));
        assert!(p.iter().any(|m| m[0]["content"].as_str().is_some_and(|s| s.contains("password"))));
    }

    #[test]
    fn plain_text_is_one_user_message_per_line() {
        let p = parse("Hello there\n\n  你好  \r\n").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], vec![json!({"role": "user", "content": "Hello there"})]);
        assert_eq!(p[1][0]["content"], "你好");
    }

    #[test]
    fn jsonl_accepts_messages_and_prompt() {
        let text = concat!(
            "  {\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}]}\n",
            "\n",
            "{\"prompt\": \"退货政策是什么？\"}\n",
        );
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].len(), 2);
        assert_eq!(p[1], vec![json!({"role": "user", "content": "退货政策是什么？"})]);
    }

    #[test]
    fn bad_jsonl_line_reports_its_number() {
        let err = parse("{\"prompt\": \"ok\"}\n\n{\"prompt\": 3}\n").unwrap_err();
        assert!(format!("{err:#}").starts_with("line 3:"), "{err:#}");
        let err = parse("{\"prompt\": \"ok\"}\n{not json\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2: not valid JSON"), "{err:#}");
        let err = parse("{\"messages\": []}").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(parse("").is_err());
        assert!(parse("\n  \n").is_err());
    }
}
