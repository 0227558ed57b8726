//! Shared helpers of the fixture tests: a small JSON reader (the crate has no JSON
//! dependency) and comparison helpers.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(s: &str) -> Json {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing characters in JSON");
        v
    }

    pub fn get(&self, k: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(k).unwrap_or_else(|| panic!("missing key {k}")),
            _ => panic!("not an object"),
        }
    }

    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => panic!("not an array: {self:?}"),
        }
    }

    pub fn f64(&self) -> f64 {
        match self {
            Json::Num(x) => *x,
            _ => panic!("not a number: {self:?}"),
        }
    }

    pub fn usize(&self) -> usize {
        self.f64() as usize
    }

    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {self:?}"),
        }
    }

    pub fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            _ => panic!("not a bool: {self:?}"),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The array as f32 (fixture inputs are f32 values written exactly as f64).
    pub fn f32s(&self) -> Vec<f32> {
        self.arr().iter().map(|v| v.f64() as f32).collect()
    }

    pub fn f64s(&self) -> Vec<f64> {
        self.arr().iter().map(Json::f64).collect()
    }

    pub fn i64s(&self) -> Vec<i64> {
        self.arr().iter().map(|v| v.f64() as i64).collect()
    }

    pub fn opt_f32s(&self) -> Option<Vec<f32>> {
        if self.is_null() {
            None
        } else {
            Some(self.f32s())
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.b[self.i], c, "expected {} at {}", c as char, self.i);
        self.i += 1;
    }

    fn value(&mut self) -> Json {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.b[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(m);
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value() else {
                        panic!("object key")
                    };
                    self.eat(b':');
                    let v = self.value();
                    m.insert(k, v);
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b'}' {
                        return Json::Obj(m);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b']' {
                        return Json::Arr(a);
                    }
                }
            }
            b'"' => {
                let start = self.i + 1;
                self.i = start;
                while self.b[self.i] != b'"' {
                    assert_ne!(
                        self.b[self.i], b'\\',
                        "escapes are not used by the fixtures"
                    );
                    self.i += 1;
                }
                self.i += 1;
                Json::Str(String::from_utf8(self.b[start..self.i - 1].to_vec()).expect("utf-8"))
            }
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            _ => {
                let start = self.i;
                while self.i < self.b.len() && b"+-0123456789.eE".contains(&self.b[self.i]) {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).expect("ascii");
                Json::Num(s.parse().unwrap_or_else(|_| panic!("bad number {s:?}")))
            }
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Json {
        assert!(
            self.b[self.i..].starts_with(w.as_bytes()),
            "bad literal at {}",
            self.i
        );
        self.i += w.len();
        v
    }
}

/// `tests/fixtures/distill/<name>`, or `$EDGEML_DISTILL_FIXTURES/<name>` (set by
/// scripts/ci/distill.sh to freshly generated fixtures).
pub fn fixture(name: &str) -> Json {
    let dir = std::env::var_os("EDGEML_DISTILL_FIXTURES").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/distill"),
        std::path::PathBuf::from,
    );
    let p = dir.join(name);
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Json::parse(&s)
}

/// Relative closeness of a loss.
pub fn loss_close(got: f64, want: f64, rel: f64) -> bool {
    got == want || (got - want).abs() <= rel * want.abs()
}

/// The worst gradient error relative to the largest reference entry (0 for two zero
/// gradients).
pub fn grad_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "gradient lengths");
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - w).abs()));
    if scale == 0.0 { worst } else { worst / scale }
}

#[test]
fn json_reader_reads_what_the_fixtures_use() {
    let v = Json::parse(r#"{"a":[1,-2.5e-3,3E2],"b":null,"c":"x","d":true,"e":{}}"#);
    assert_eq!(v.get("a").f64s(), vec![1.0, -2.5e-3, 300.0]);
    assert!(v.get("b").is_null());
    assert_eq!(v.get("c").str(), "x");
    assert!(v.get("d").bool());
}
