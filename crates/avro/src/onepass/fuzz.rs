//! Seeded random schemas and payloads (valid, and mutated into invalid ones), each encoded by the one-pass
//! encoder and by the tree path, which must agree (see [`super::tests::agree`]).

use super::tests::agree;
use crate::schemas::LoadedSchema;

/// xorshift64*: small, seeded, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// A generated schema, kept to generate values for it.
#[derive(Clone, Debug)]
enum Gen {
    /// A primitive or logical type written as `json`, with sample values (some invalid).
    Leaf {
        json: String,
        samples: &'static [&'static str],
    },
    Enum {
        json: String,
        symbols: Vec<String>,
    },
    Array(Box<Gen>),
    Map(Box<Gen>),
    Union(Vec<Gen>),
    Record {
        json: String,
        fields: Vec<(String, Gen)>,
    },
    /// A reference by name to a record defined earlier.
    Ref {
        name: String,
        target: Box<Gen>,
    },
}

const LEAVES: &[(&str, &[&str])] = &[
    (r#""null""#, &["null", "0"]),
    (r#""boolean""#, &["true", "false", "1"]),
    (
        r#""int""#,
        &["0", "-1", "2147483647", "2147483648", "1.5", "1e2", "\"1\""],
    ),
    (
        r#""long""#,
        &["7", "-9223372036854775808", "9223372036854775808", "-0", "1E1"],
    ),
    (r#""float""#, &["1.5", "3", "1e300", "\"NaN\"", "-0.0"]),
    (
        r#""double""#,
        &["2.25", "-7", "18446744073709551616", "\"-Infinity\"", "\"x\""],
    ),
    (
        r#""string""#,
        &[
            "\"a\"",
            "\"h\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\"",
            "5",
            "\"\\u0000\"",
        ],
    ),
    (r#""bytes""#, &["\"ab\"", "\"\\u00ff\"", "\"\\u0100\"", "\"€\""]),
    (
        r#"{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}"#,
        &[
            "\"12.34\"",
            "12.5",
            "-1",
            "\"1.234\"",
            "\"12345.67\"",
            "\"-0.01\"",
        ],
    ),
    (
        r#"{"type":"string","logicalType":"uuid"}"#,
        &[
            "\"67e55044-10b1-426f-9247-bb680e5fe0c8\"",
            "\"67E5504410B1426F9247BB680E5FE0C8\"",
            "\"no\"",
        ],
    ),
    (
        r#"{"type":"int","logicalType":"date"}"#,
        &["\"2024-02-29\"", "19000", "\"2023-02-29\""],
    ),
    (
        r#"{"type":"long","logicalType":"timestamp-millis"}"#,
        &[
            "\"2024-05-01T12:00:00.123Z\"",
            "42",
            "\"2024-05-01T12:00:00\"",
            "1.5",
        ],
    ),
    (
        r#"{"type":"long","logicalType":"local-timestamp-micros"}"#,
        &["\"2024-05-01T12:00:00.5\"", "\"2024-05-01T12:00:00Z\""],
    ),
    (
        r#"{"type":"int","logicalType":"time-millis"}"#,
        &["\"01:00:00.250\"", "86400000", "5"],
    ),
];

struct Schemas {
    rng: Rng,
    names: usize,
    records: Vec<(String, Gen)>,
}

impl Schemas {
    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn gen(&mut self, depth: usize, in_union: bool) -> Gen {
        let roll = if depth == 0 { 0 } else { self.rng.below(10) };
        match roll {
            0..=3 => {
                let (json, samples) = self.rng.pick(LEAVES);
                Gen::Leaf {
                    json: json.to_string(),
                    samples,
                }
            }
            4 => {
                let name = self.name("E");
                let symbols: Vec<String> = (0..1 + self.rng.below(3)).map(|i| format!("S{i}")).collect();
                let quoted: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
                let json = format!(
                    r#"{{"type":"enum","name":"{name}","symbols":[{}]}}"#,
                    quoted.join(",")
                );
                Gen::Enum { json, symbols }
            }
            5 => Gen::Array(Box::new(self.gen(depth - 1, false))),
            6 => Gen::Map(Box::new(self.gen(depth - 1, false))),
            7 if !in_union => {
                let mut branches = vec![Gen::Leaf {
                    json: r#""null""#.into(),
                    samples: &["null"],
                }];
                let mut seen = vec![r#""null""#.to_string()];
                for _ in 0..1 + self.rng.below(3) {
                    let b = self.gen(depth - 1, true);
                    let key = match &b {
                        Gen::Leaf { json, .. } => json.clone(),
                        Gen::Array(_) => "array".into(),
                        Gen::Map(_) => "map".into(),
                        _ => continue,
                    };
                    let underlying = if key.contains("\"bytes\"") {
                        "bytes".to_string()
                    } else {
                        key.clone()
                    };
                    if seen.contains(&underlying) || seen.contains(&key) {
                        continue;
                    }
                    seen.push(underlying);
                    branches.push(b);
                }
                if self.rng.chance(30) {
                    branches.rotate_left(1);
                }
                Gen::Union(branches)
            }
            8 if !self.records.is_empty() && self.rng.chance(50) => {
                let (name, target) = self.rng.pick(&self.records);
                Gen::Ref {
                    name,
                    target: Box::new(target),
                }
            }
            _ => self.record(depth - 1),
        }
    }

    fn record(&mut self, depth: usize) -> Gen {
        let name = self.name("R");
        let mut fields = Vec::new();
        let mut texts = Vec::new();
        for i in 0..1 + self.rng.below(5) {
            let g = self.gen(depth, false);
            let fname = format!("f{i}");
            let default = match &g {
                Gen::Union(b)
                    if matches!(&b[0], Gen::Leaf { json, .. } if json == r#""null""#)
                        && self.rng.chance(60) =>
                {
                    r#","default":null"#.to_string()
                }
                Gen::Leaf { json, samples } if self.rng.chance(30) && !json.contains("logicalType") => {
                    format!(r#","default":{}"#, samples[0])
                }
                Gen::Array(_) if self.rng.chance(30) => r#","default":[]"#.to_string(),
                _ => String::new(),
            };
            texts.push(format!(r#"{{"name":"{fname}","type":{}{default}}}"#, g.json()));
            fields.push((fname, g));
        }
        let json = format!(
            r#"{{"type":"record","name":"{name}","fields":[{}]}}"#,
            texts.join(",")
        );
        let g = Gen::Record { json, fields };
        self.records.push((name, g.clone()));
        g
    }
}

impl Gen {
    fn json(&self) -> String {
        match self {
            Gen::Leaf { json, .. } | Gen::Enum { json, .. } | Gen::Record { json, .. } => json.clone(),
            Gen::Array(items) => format!(r#"{{"type":"array","items":{}}}"#, items.json()),
            Gen::Map(values) => format!(r#"{{"type":"map","values":{}}}"#, values.json()),
            Gen::Union(branches) => {
                let b: Vec<String> = branches.iter().map(Gen::json).collect();
                format!("[{}]", b.join(","))
            }
            Gen::Ref { name, .. } => format!("\"{name}\""),
        }
    }
}

const WRONG: &[&str] = &["null", "1", "\"x\"", "[]", "{}", "true", "1.5", "{\"f0\":1}"];

/// A JSON text for `g`, mostly valid; `mutate` percent of nodes get something else.
fn value(rng: &mut Rng, g: &Gen, depth: usize, mutate: usize, out: &mut String) {
    let ws = |rng: &mut Rng, out: &mut String| {
        if rng.chance(10) {
            out.push_str(rng.pick(&[" ", "\n", "\t ", "\r\n  "]));
        }
    };
    ws(rng, out);
    if rng.chance(mutate) || depth > 12 {
        out.push_str(rng.pick(WRONG));
        return;
    }
    match g {
        Gen::Leaf { samples, .. } => out.push_str(rng.pick(samples)),
        Gen::Enum { symbols, .. } => {
            if rng.chance(5) {
                out.push_str("\"NOPE\"");
            } else {
                out.push_str(&format!("\"{}\"", rng.pick(symbols)));
            }
        }
        Gen::Array(items) => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                value(rng, items, depth + 1, mutate, out);
            }
            out.push(']');
        }
        Gen::Map(values) => {
            out.push('{');
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("\"{}\":", rng.pick(&["a", "b", "c", "k e", "\\u00e9"])));
                value(rng, values, depth + 1, mutate, out);
            }
            out.push('}');
        }
        Gen::Union(branches) => {
            let b = &branches[rng.below(branches.len())];
            let tag = match b {
                Gen::Leaf { json, .. } if rng.chance(20) && !json.contains('{') => {
                    Some(json.trim_matches('"').to_string())
                }
                _ => None,
            };
            match tag {
                Some(t) => {
                    out.push_str(&format!("{{\"{t}\":"));
                    value(rng, b, depth + 1, mutate, out);
                    out.push('}');
                }
                None => value(rng, b, depth + 1, mutate, out),
            }
        }
        Gen::Ref { target, .. } => value(rng, target, depth + 1, mutate, out),
        Gen::Record { fields, .. } => {
            let mut order: Vec<usize> = (0..fields.len()).collect();
            if rng.chance(30) {
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
            }
            if rng.chance(10) && !order.is_empty() {
                order.push(order[rng.below(order.len())]);
            }
            out.push('{');
            let mut first = true;
            for i in order {
                if rng.chance(10) {
                    continue; // absent: its default, or missing
                }
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&format!("\"{}\":", fields[i].0));
                value(rng, &fields[i].1, depth + 1, mutate, out);
            }
            if rng.chance(5) {
                if !first {
                    out.push(',');
                }
                out.push_str("\"zz\":[1,{\"q\":null}]");
            }
            out.push('}');
        }
    }
    ws(rng, out);
}

/// Breaks JSON syntax now and then: cut short (maybe inside a UTF-8 sequence), a stray byte, a trailing
/// token.
fn corrupt(rng: &mut Rng, text: &mut Vec<u8>) {
    match rng.below(20) {
        0 => text.truncate(rng.below(text.len() + 1)),
        1 => text.extend_from_slice(b" x"),
        2 => text.insert(rng.below(text.len() + 1), b','),
        3 => text.extend_from_slice(rng.pick(&[&b"}"[..], b"]", b" {}", b"\"\\ud800\"", b"\xff"])),
        4 => text.insert(rng.below(text.len() + 1), 0xc3),
        _ => {}
    }
}

#[test]
fn random_schemas_and_payloads_agree() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..400 {
        let mut schemas = Schemas {
            rng: Rng(rng.next() | 1),
            names: 0,
            records: Vec::new(),
        };
        let root = schemas.record(3);
        let text = root.json();
        let Ok(schema) = LoadedSchema::parse(&text, "G.avsc") else {
            continue;
        };
        let mut values = Rng(rng.next() | 1);
        for round in 0..40 {
            let mut payload = String::new();
            value(&mut values, &root, 0, [0, 2, 8, 25][round % 4], &mut payload);
            let mut payload = payload.into_bytes();
            corrupt(&mut values, &mut payload);
            match agree(&schema, &payload) {
                Ok(_) => accepted += 1,
                Err(_) => rejected += 1,
            }
        }
    }
    assert!(
        accepted > 1_000 && rejected > 1_000,
        "accepted {accepted}, rejected {rejected}"
    );
}
