//! Capture filters (`--namespace`, `--exclude-namespace`, `--pod`, `--selector`): which pods podtap
//! captures. Evaluated per pod from its metadata; the capture layer turns the answer into the kernel's
//! cgroup map (`capture::filter`), so excluded pods' traffic never leaves the kernel.
//!
//! All given conditions must hold (AND): namespace in the `--namespace` list (when given), not in an
//! `--exclude-namespace`, name matching `--pod` (unanchored, like grep), labels matching `--selector`
//! (the Kubernetes label selector syntax, parsed with kubectl's rules).

use std::collections::BTreeMap;

use super::meta::PodMeta;

/// A flag value podtap cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("--pod {value:?} is not a valid regular expression: {reason}")]
    PodRegex { value: String, reason: String },
    #[error("--selector {value:?} is not a valid label selector: {reason}")]
    Selector { value: String, reason: String },
    #[error("--{flag} {value:?} is not a namespace name (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)")]
    Namespace { flag: &'static str, value: String },
}

/// What the kernel does with the cgroups userspace lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// No filter: everything is captured, the kernel does not look.
    Off,
    /// Only sockets of the listed pods are captured (any `--namespace`, `--pod` or `--selector`);
    /// everything else, the node's own processes included, stays in the kernel.
    Include,
    /// Sockets of the listed pods are not captured (only `--exclude-namespace` given).
    Exclude,
}

/// The user's capture filter. Empty: everything is captured.
#[derive(Clone, Debug, Default)]
pub struct CaptureFilter {
    pub namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    pub pod: Option<regex::Regex>,
    pub selector: Option<LabelSelector>,
}

impl CaptureFilter {
    /// Builds the filter from the flags' values, checking each.
    ///
    /// # Errors
    /// A namespace that is not a namespace name, a regex that does not compile, a selector that does
    /// not parse; the error names the flag.
    pub fn new(
        namespaces: &[String],
        exclude_namespaces: &[String],
        pod: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Self, FilterError> {
        for (flag, list) in [
            ("namespace", namespaces),
            ("exclude-namespace", exclude_namespaces),
        ] {
            if let Some(bad) = list.iter().find(|ns| !is_dns_label(ns)) {
                return Err(FilterError::Namespace {
                    flag,
                    value: bad.clone(),
                });
            }
        }
        let pod = pod
            .map(|value| {
                regex::Regex::new(value).map_err(|e| FilterError::PodRegex {
                    value: value.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let selector = selector
            .map(|value| {
                LabelSelector::parse(value).map_err(|reason| FilterError::Selector {
                    value: value.to_owned(),
                    reason,
                })
            })
            .transpose()?;
        Ok(Self {
            namespaces: namespaces.to_vec(),
            exclude_namespaces: exclude_namespaces.to_vec(),
            pod,
            selector,
        })
    }

    /// No filter at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.exclude_namespaces.is_empty()
            && self.pod.is_none()
            && self.selector.is_none()
    }

    /// How the kernel applies this filter.
    #[must_use]
    pub fn mode(&self) -> FilterMode {
        if !self.namespaces.is_empty() || self.pod.is_some() || self.selector.is_some() {
            FilterMode::Include
        } else if !self.exclude_namespaces.is_empty() {
            FilterMode::Exclude
        } else {
            FilterMode::Off
        }
    }

    /// Whether this pod's traffic is captured.
    #[must_use]
    pub fn matches(&self, pod: &PodMeta) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(&pod.namespace))
            && !self.exclude_namespaces.contains(&pod.namespace)
            && self.pod.as_ref().is_none_or(|re| re.is_match(&pod.name))
            && self
                .selector
                .as_ref()
                .is_none_or(|s| s.matches(&pod.labels))
    }

    /// Whether the kernel map lists this pod: in include mode the pods captured, in exclude mode the
    /// pods not captured.
    #[must_use]
    pub fn lists(&self, pod: &PodMeta) -> bool {
        match self.mode() {
            FilterMode::Off => false,
            FilterMode::Include => self.matches(pod),
            FilterMode::Exclude => !self.matches(pod),
        }
    }
}

/// RFC 1123 label: what a namespace name is.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A Kubernetes label selector (`app=web,tier!=db,env in (a,b),!legacy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    /// `key=value`, `key==value`, `key in (v, ...)`: the label is there and its value is listed.
    In(Vec<String>),
    /// `key!=value`, `key notin (v, ...)`: the label is missing or its value is not listed.
    NotIn(Vec<String>),
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>N`: the label is there and its value an integer greater than N.
    Gt(i64),
    /// `key<N`.
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    In,
    NotIn,
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Gt,
    Lt,
    Comma,
    Open,
    Close,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("'{s}'"),
            Token::In => "'in'".into(),
            Token::NotIn => "'notin'".into(),
            Token::Eq => "'='".into(),
            Token::DoubleEq => "'=='".into(),
            Token::NotEq => "'!='".into(),
            Token::Bang => "'!'".into(),
            Token::Gt => "'>'".into(),
            Token::Lt => "'<'".into(),
            Token::Comma => "','".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
        }
    }
}

/// Characters that end an identifier (kubectl's lexer).
fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>')
}

fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next_is_eq = chars.peek().is_some_and(|&(_, n)| n == '=');
            let token = match c {
                '=' if next_is_eq => {
                    chars.next();
                    Token::DoubleEq
                }
                '=' => Token::Eq,
                '!' if next_is_eq => {
                    chars.next();
                    Token::NotEq
                }
                '!' => Token::Bang,
                '(' => Token::Open,
                ')' => Token::Close,
                ',' => Token::Comma,
                '<' => Token::Lt,
                _ => Token::Gt,
            };
            tokens.push(token);
            continue;
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let word = &input[start..end];
        tokens.push(match word {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word.to_owned()),
        });
    }
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = if self.peek() == Some(&Token::Bang) {
            self.next();
            true
        } else {
            false
        };
        let key = match self.next() {
            Some(Token::Ident(key)) => key,
            Some(other) => return Err(format!("expected a label key, found {}", other.describe())),
            None => return Err("expected a label key, found the end".into()),
        };
        validate_key(&key)?;
        if negated {
            return match self.peek() {
                None | Some(Token::Comma) => Ok(Requirement {
                    key,
                    op: Op::DoesNotExist,
                }),
                Some(other) => Err(format!(
                    "'!{key}' takes no operator, found {}",
                    other.describe()
                )),
            };
        }
        if matches!(self.peek(), None | Some(Token::Comma)) {
            return Ok(Requirement {
                key,
                op: Op::Exists,
            });
        }
        let op = match self.next() {
            Some(Token::Eq | Token::DoubleEq) => Op::In(vec![self.single_value(&key)?]),
            Some(Token::NotEq) => Op::NotIn(vec![self.single_value(&key)?]),
            Some(Token::In) => Op::In(self.value_set(&key, "in")?),
            Some(Token::NotIn) => Op::NotIn(self.value_set(&key, "notin")?),
            Some(Token::Gt) => Op::Gt(self.integer(&key, '>')?),
            Some(Token::Lt) => Op::Lt(self.integer(&key, '<')?),
            other => {
                return Err(format!(
                    "expected an operator (=, ==, !=, in, notin, >, <) after '{key}', found {}",
                    other.map_or_else(|| "the end".into(), |t| t.describe())
                ))
            }
        };
        Ok(Requirement { key, op })
    }

    /// The value after `=`, `==` or `!=`: one identifier, or nothing (an empty value).
    fn single_value(&mut self, key: &str) -> Result<String, String> {
        match self.peek() {
            None | Some(Token::Comma) => Ok(String::new()),
            Some(Token::Ident(_)) => {
                let Some(Token::Ident(value)) = self.next() else {
                    return Err("internal parser error".into());
                };
                validate_value(&value)?;
                Ok(value)
            }
            Some(other) => Err(format!(
                "expected a value for '{key}', found {}",
                other.describe()
            )),
        }
    }

    /// `(v1, v2, ...)` after `in` / `notin`; values may be empty (`(a,)`), the set may not.
    fn value_set(&mut self, key: &str, op: &str) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Token::Open) => {}
            Some(other) => {
                return Err(format!(
                    "expected '(' after '{key} {op}', found {}",
                    other.describe()
                ))
            }
            None => return Err(format!("expected '(' after '{key} {op}', found the end")),
        }
        let mut values = Vec::new();
        let mut want_value = true;
        loop {
            match self.next() {
                Some(Token::Ident(value)) if want_value => {
                    validate_value(&value)?;
                    values.push(value);
                    want_value = false;
                }
                Some(Token::Comma) => {
                    if want_value {
                        values.push(String::new());
                    }
                    want_value = true;
                }
                Some(Token::Close) => {
                    if want_value && !values.is_empty() {
                        values.push(String::new());
                    }
                    break;
                }
                Some(other) => {
                    return Err(format!(
                        "unexpected {} in the values of '{key} {op}'",
                        other.describe()
                    ))
                }
                None => return Err(format!("missing ')' after the values of '{key} {op}'")),
            }
        }
        if values.is_empty() {
            return Err(format!("'{key} {op} ()' needs at least one value"));
        }
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn integer(&mut self, key: &str, op: char) -> Result<i64, String> {
        match self.next() {
            Some(Token::Ident(value)) => value
                .parse()
                .map_err(|_| format!("'{key}{op}{value}': '{value}' is not an integer")),
            Some(other) => Err(format!(
                "expected an integer after '{key}{op}', found {}",
                other.describe()
            )),
            None => Err(format!(
                "expected an integer after '{key}{op}', found the end"
            )),
        }
    }
}

/// A label key: `[prefix/]name`, prefix a DNS subdomain (at most 253), name at most 63 characters of
/// `[A-Za-z0-9_.-]` starting and ending alphanumeric.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(is_dns_label);
        if !ok {
            return Err(format!(
                "label key '{key}': prefix '{prefix}' is not a DNS subdomain"
            ));
        }
    }
    if !is_qualified_name(name) {
        return Err(format!(
            "label key '{key}': name '{name}' must be 1-63 characters of letters, digits, '-', '_' \
             or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or like a key's name part.
fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label value '{value}' must be at most 63 characters of letters, digits, '-', '_' or \
             '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_qualified_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

impl LabelSelector {
    /// Parses a selector; the empty selector selects everything (as in kubectl).
    ///
    /// # Errors
    /// What is wrong, and where.
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut parser = Parser {
            tokens: lex(input),
            at: 0,
        };
        let mut requirements = Vec::new();
        if parser.peek().is_none() {
            return Ok(Self { requirements });
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some(Token::Comma) => {
                    if parser.peek().is_none() {
                        return Err("a ',' with no requirement after it".into());
                    }
                }
                Some(other) => {
                    return Err(format!(
                        "expected ',' between requirements, found {}",
                        other.describe()
                    ))
                }
            }
        }
        Ok(Self { requirements })
    }

    /// Whether a pod with these labels is selected.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match &r.op {
                Op::In(values) => value.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Gt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            uid: "u".into(),
            name: name.into(),
            namespace: namespace.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..PodMeta::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn selector_operators() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        let cases: &[(&str, [bool; 3])] = &[
            ("app=web", [true, false, false]),
            ("app==web", [true, false, false]),
            ("app!=web", [false, true, true]),
            ("app in (web,db)", [true, true, false]),
            ("app in (db)", [false, true, false]),
            ("app notin (web)", [false, true, true]),
            ("tier", [true, false, false]),
            ("!tier", [false, true, true]),
            ("app=web,tier=front", [true, false, false]),
            ("app=web,tier=back", [false, false, false]),
            ("app in (web, db) , !tier", [false, true, false]),
            ("n>4", [true, false, false]),
            ("n<5", [false, false, false]),
            ("app=", [false, false, false]),
            ("app!=", [true, true, true]),
            ("", [true, true, true]),
            ("  app = web  ", [true, false, false]),
            ("example.com/role notin (x),app", [true, true, false]),
        ];
        for (s, want) in cases {
            let selector = sel(s);
            let got = [
                selector.matches(&web),
                selector.matches(&db),
                selector.matches(&none),
            ];
            assert_eq!(got, *want, "selector {s:?}");
        }
    }

    #[test]
    fn selector_empty_value_in_set() {
        let s = sel("app in (a,)");
        assert!(s.matches(&labels(&[("app", "")])));
        assert!(s.matches(&labels(&[("app", "a")])));
        assert!(!s.matches(&labels(&[("app", "b")])));
    }

    #[test]
    fn selector_errors() {
        for bad in [
            "app=web=x",
            "app in web",
            "app in ()",
            "app in (a",
            "app notin",
            "=web",
            "app=web,",
            ",app",
            "!app=web",
            "app web",
            "-app=x",
            "app=-x",
            "app=x y",
            "n>abc",
            "n>",
            "a/b/c=1",
            "/a=1",
            "Example.COM/a=1",
            "app=(x)",
            "app in (a b)",
            "app==",
            &format!("app={}", "x".repeat(64)),
            &format!("{}=x", "k".repeat(64)),
        ] {
            let parsed = LabelSelector::parse(bad);
            // `app==` is `app == ""`: valid in kubectl too; only the rest must fail.
            if bad == "app==" {
                assert!(parsed.is_ok(), "{bad:?}");
                continue;
            }
            assert!(parsed.is_err(), "{bad:?} parsed as {parsed:?}");
        }
    }

    #[test]
    fn filter_from_flags() {
        let f = CaptureFilter::new(
            &["a".into(), "b".into()],
            &["kube-system".into()],
            Some("^web-"),
            Some("app=web"),
        )
        .expect("valid");
        assert_eq!(f.mode(), FilterMode::Include);
        assert!(f.matches(&pod("a", "web-1", &[("app", "web")])));
        assert!(
            !f.matches(&pod("c", "web-1", &[("app", "web")])),
            "namespace"
        );
        assert!(!f.matches(&pod("a", "db-1", &[("app", "web")])), "name");
        assert!(!f.matches(&pod("a", "web-1", &[("app", "db")])), "labels");

        let f = CaptureFilter::new(&[], &["kube-system".into()], None, None).expect("valid");
        assert_eq!(f.mode(), FilterMode::Exclude);
        assert!(f.matches(&pod("default", "x", &[])));
        assert!(!f.matches(&pod("kube-system", "x", &[])));
        assert!(
            f.lists(&pod("kube-system", "x", &[])),
            "exclude mode lists the excluded"
        );
        assert!(!f.lists(&pod("default", "x", &[])));

        // Include and exclude together: the kernel lists what is captured.
        let f = CaptureFilter::new(&["a".into()], &["a".into()], None, None).expect("valid");
        assert_eq!(f.mode(), FilterMode::Include);
        assert!(!f.lists(&pod("a", "x", &[])), "excluded wins");

        let f = CaptureFilter::new(&[], &[], None, None).expect("valid");
        assert!(f.is_empty());
        assert_eq!(f.mode(), FilterMode::Off);
        assert!(f.matches(&pod("x", "y", &[])));
        assert!(!f.lists(&pod("x", "y", &[])));

        // The regex is unanchored.
        let f = CaptureFilter::new(&[], &[], Some("eb"), None).expect("valid");
        assert!(f.matches(&pod("x", "web-1", &[])));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = CaptureFilter::new(&[], &[], Some("web-("), None).expect_err("bad regex");
        assert!(e.to_string().starts_with("--pod \"web-(\""), "{e}");
        let e = CaptureFilter::new(&[], &[], None, Some("app in web")).expect_err("bad selector");
        assert!(
            e.to_string().starts_with("--selector \"app in web\""),
            "{e}"
        );
        assert!(e.to_string().contains("expected '('"), "{e}");
        let e = CaptureFilter::new(&["Default".into()], &[], None, None).expect_err("bad ns");
        assert!(e.to_string().starts_with("--namespace \"Default\""), "{e}");
        let e = CaptureFilter::new(&[], &["a_b".into()], None, None).expect_err("bad ns");
        assert!(e.to_string().starts_with("--exclude-namespace"), "{e}");
    }
}
