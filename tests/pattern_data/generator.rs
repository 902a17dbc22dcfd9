//! A seeded generator of event patterns and events for the differential test.
//!
//! The grammar covers every operator and the documented edge cases (numbers as numbers, `"300"`
//! versus `300`, `null` versus `""`, missing fields, empty and nested arrays, arrays of objects,
//! objects where a leaf is expected, `$or` at the top and nested), plus patterns that both
//! engines must reject. Each event field has a *kind* that limits which operators are generated
//! against it, so that the known LocalStack departures (listed in `localstack_exceptions.json`,
//! checked there one by one) are not hit at random: booleans never meet numeric operators,
//! `cidr` only meets strings, case-insensitive prefix/suffix only meet strings and null, and an
//! array of objects is only ever tested through one leaf path. The one departure that cannot be
//! avoided by construction, a `*` that must match zero characters, is detected by
//! [`touches_known_departure`] and such events are not used.

use serde_json::{json, Map, Value};

/// SplitMix64: tiny, fast, and stable forever, so a seed reproduces the same corpus on any
/// machine and any dependency version.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Strings events hold and patterns test: cases, prefixes, suffixes, globs, IPs, non-ASCII.
const STRINGS: &[&str] = &[
    "",
    "created",
    "Created",
    "CREATED",
    "deleted",
    "some/package",
    "team/data",
    "Team/Data",
    "init",
    "initializing",
    "running",
    "stopped",
    "file.png",
    "dir/file.png",
    "dir/sub/file.PNG",
    "usr/lib/x.so",
    "a*b",
    "Title",
    "MyTitleHere",
    "300",
    "10.0.0.5",
    "2001:db8::1",
    "été",
    "ÉTÉ",
    "us-east-1",
    "eu-west-1",
];

/// Numbers within the numeric-matching limits, with at most six decimals.
const NUMBERS: &[f64] = &[
    0.0,
    -1.0,
    1.0,
    5.0,
    10.0,
    300.0,
    301.8,
    0.5,
    -2.25,
    5e9,
    -5e9,
    123456.0,
    7.000001,
    1e-6,
    999999.999999,
];

/// Integers written as integers in JSON (to meet `300.0`-style floats as numbers).
const INTEGERS: &[i64] = &[0, 1, 5, 10, 300, -1, 123456];

const IPS: &[&str] = &[
    "10.0.0.5",
    "10.0.0.255",
    "10.0.1.7",
    "10.200.3.4",
    "192.168.1.1",
    "192.168.2.1",
    "2001:db8::1",
    "2001:db8:1::5",
    "2001:db9::5",
    "::1",
    "not-an-ip",
    "10.0.0",
    "",
];

const CIDRS: &[&str] = &[
    "10.0.0.0/24",
    "10.0.0.0/8",
    "10.0.0.4/30",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "2001:db8::/32",
    "::/0",
    "::/127",
];

/// Operands for `numeric` and numeric `anything-but`.
const NUMERIC_OPERANDS: &[f64] = &[
    0.0, 1.0, 5.0, 10.0, 300.0, 301.8, -1.0, 0.5, 5e9, -5e9, 1e-6, 123456.0,
];

/// What values an event field holds, which decides which operators may test it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Strings, sometimes null, sometimes an array of strings.
    Str,
    /// Numbers (integers and floats), sometimes null, sometimes an array of numbers.
    Num,
    /// Booleans, null, and the strings "true"/"false".
    Flag,
    /// Strings, numbers and null: "300" against 300.
    Mixed,
    /// IP-ish strings.
    Ip,
    /// Arrays mixing strings, numbers, null, nested arrays and objects.
    Tags,
    /// Only ever reached as `obj.k`/`obj.n`/`obj.x`: an object, an array of objects, a string...
    ObjString,
    ObjNumber,
}

/// A leaf path the generator may test, and its kind.
const FIELDS: &[(&[&str], Kind)] = &[
    (&["source"], Kind::Str),
    (&["detail-type"], Kind::Str),
    (&["region"], Kind::Str),
    (&["account"], Kind::Str),
    (&["resources"], Kind::Str),
    (&["detail", "s"], Kind::Str),
    (&["detail", "handle"], Kind::Str),
    (&["detail", "n"], Kind::Num),
    (&["detail", "flag"], Kind::Flag),
    (&["detail", "m"], Kind::Mixed),
    (&["detail", "ip"], Kind::Ip),
    (&["detail", "tags"], Kind::Tags),
    (&["detail", "missing"], Kind::Str),
    (&["detail", "obj", "k"], Kind::ObjString),
    (&["detail", "obj", "n"], Kind::ObjNumber),
    (&["detail", "obj"], Kind::Str),
];

/// One generated pattern and the events to try it against.
pub struct Case {
    pub pattern: Value,
    pub events: Vec<Value>,
}

/// A fresh event: the envelope TestEventPattern requires, and a `detail` built from the pools.
pub fn event(rng: &mut Rng) -> Value {
    let mut detail = Map::new();
    let mut put = |rng: &mut Rng, key: &str, value: Option<Value>| {
        if let Some(v) = value {
            if rng.chance(85) {
                detail.insert(key.to_owned(), v);
            }
        }
    };
    let s = str_value(rng);
    put(rng, "s", Some(s));
    let h = str_value(rng);
    put(rng, "handle", Some(h));
    let n = num_value(rng);
    put(rng, "n", Some(n));
    let f = flag_value(rng);
    put(rng, "flag", Some(f));
    let m = mixed_value(rng);
    put(rng, "m", Some(m));
    let ip = Value::from(*rng.pick(IPS));
    put(rng, "ip", Some(ip));
    let tags = tags_value(rng);
    put(rng, "tags", Some(tags));
    let obj = obj_value(rng);
    put(rng, "obj", Some(obj));
    let detail = match rng.below(40) {
        0 => json!("not an object"),
        1 => json!([]),
        _ => Value::Object(detail),
    };
    json!({
        "version": "0",
        "id": "6425eb6a-9627-e6a1-2ae8-9d2d8883dc74",
        "detail-type": *rng.pick(&["package-revision", "Object Created", "EC2 Instance State-change Notification"]),
        "source": *rng.pick(&["com.quiltdata", "aws.ec2", "aws.s3", "Com.QuiltData"]),
        "account": *rng.pick(&["012345678901", "123456789012"]),
        "time": *rng.pick(&["2024-04-25T14:46:51Z", "2017-10-02T18:43:48Z"]),
        "region": *rng.pick(&["us-east-1", "us-west-2", "eu-west-1"]),
        "resources": match rng.below(3) {
            0 => json!([]),
            1 => json!(["arn:aws:s3:::example"]),
            _ => json!(["arn:aws:s3:::example", "arn:aws:ec2:us-east-1:123456789012:instance/i-1"]),
        },
        "detail": detail,
    })
}

fn str_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => Value::Null,
        1 => json!([]),
        2 => (0..1 + rng.below(3))
            .map(|_| Value::from(*rng.pick(STRINGS)))
            .collect(),
        _ => Value::from(*rng.pick(STRINGS)),
    }
}

fn number(rng: &mut Rng) -> Value {
    if rng.chance(40) {
        Value::from(*rng.pick(INTEGERS))
    } else {
        json!(*rng.pick(NUMBERS))
    }
}

fn num_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => Value::Null,
        1 => (0..1 + rng.below(3)).map(|_| number(rng)).collect(),
        _ => number(rng),
    }
}

fn flag_value(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!(true),
        json!(false),
        Value::Null,
        json!("true"),
        json!("false"),
    ])
    .clone()
}

fn mixed_value(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!("300"),
        json!(300),
        json!(300.0),
        json!(300.5),
        json!("abc"),
        Value::Null,
        json!(""),
        json!(""),
    ])
    .clone()
}

fn tags_value(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!([]),
        1 => json!([["created", "x"], [5]]),
        2 => json!([null]),
        3 => json!([{"k": "created"}]),
        4 => json!(["created", {"k": "v"}]),
        5 => json!("created"),
        _ => {
            let n = 1 + rng.below(3);
            (0..n)
                .map(|_| {
                    if rng.chance(70) {
                        Value::from(*rng.pick(STRINGS))
                    } else {
                        number(rng)
                    }
                })
                .collect()
        }
    }
}

fn obj_value(rng: &mut Rng) -> Value {
    let one = |rng: &mut Rng| {
        let mut m = Map::new();
        if rng.chance(75) {
            m.insert("k".into(), Value::from(*rng.pick(STRINGS)));
        }
        if rng.chance(60) {
            m.insert("n".into(), number(rng));
        }
        Value::Object(m)
    };
    match rng.below(8) {
        0 => Value::from(*rng.pick(STRINGS)),
        1 => json!([]),
        2 | 3 => (0..1 + rng.below(3)).map(|_| one(rng)).collect(),
        _ => one(rng),
    }
}

/// Cuts `s` at a random character boundary: the prefix (`front`) or the suffix.
fn cut(rng: &mut Rng, s: &str, front: bool) -> String {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let at = *rng.pick(&bounds);
    if front {
        s[..at].to_owned()
    } else {
        s[at..].to_owned()
    }
}

fn flip_case(rng: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.chance(50) {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_lowercase().collect::<String>()
            }
        })
        .collect()
}

/// A glob from a pool string: some character runs replaced by `*` (never two in a row, at
/// most five), or a literal star escaped away is left to the exception list.
fn glob(rng: &mut Rng, s: &str) -> String {
    let chars: Vec<char> = s.chars().filter(|c| *c != '*' && *c != '\\').collect();
    let mut out = String::new();
    let mut stars = 0;
    let mut i = 0;
    while i < chars.len() {
        if stars < 4 && rng.chance(25) {
            if !out.ends_with('*') {
                out.push('*');
                stars += 1;
            }
            i += rng.below(3); // skip 0..2 characters
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    if rng.chance(20) && !out.ends_with('*') {
        out.push('*');
    }
    out
}

fn string_for(rng: &mut Rng, kind: Kind) -> String {
    match kind {
        Kind::Ip => rng.pick(IPS).to_string(),
        Kind::Flag => rng.pick(&["true", "false", "True"]).to_string(),
        _ => rng.pick(STRINGS).to_string(),
    }
}

fn numeric_operand(rng: &mut Rng) -> Value {
    json!(*rng.pick(NUMERIC_OPERANDS))
}

/// One alternative for a leaf of `kind`.
fn matcher(rng: &mut Rng, kind: Kind) -> Value {
    let numeric_ok = matches!(
        kind,
        Kind::Num | Kind::Mixed | Kind::Tags | Kind::ObjNumber | Kind::Str
    );
    let strings_only = matches!(kind, Kind::Str | Kind::Ip | Kind::ObjString);
    loop {
        let s = string_for(rng, kind);
        let candidate = match rng.below(17) {
            0 if kind == Kind::Flag && rng.chance(60) => Value::from(rng.chance(50)),
            0 => Value::from(s),
            1 if numeric_ok => number(rng),
            1 => Value::from(s),
            2 => match kind {
                Kind::Flag => rng.pick(&[json!(true), json!(false), Value::Null]).clone(),
                _ => Value::Null,
            },
            3 => json!({"prefix": cut(rng, &s, true)}),
            4 if strings_only => {
                let p = cut(rng, &s, true);
                json!({"prefix": {"equals-ignore-case": flip_case(rng, &p)}})
            }
            5 => json!({"suffix": cut(rng, &s, false)}),
            6 if strings_only => {
                let p = cut(rng, &s, false);
                json!({"suffix": {"equals-ignore-case": flip_case(rng, &p)}})
            }
            7 => json!({"equals-ignore-case": flip_case(rng, &s)}),
            8 => json!({"wildcard": glob(rng, &s)}),
            9 => json!({"exists": rng.chance(50)}),
            10 | 11 if numeric_ok => {
                let ops = ["=", "<", "<=", ">", ">="];
                if rng.chance(40) {
                    let mut a = rng.below(NUMERIC_OPERANDS.len());
                    let mut b = rng.below(NUMERIC_OPERANDS.len());
                    if NUMERIC_OPERANDS[a] > NUMERIC_OPERANDS[b] {
                        std::mem::swap(&mut a, &mut b);
                    }
                    if NUMERIC_OPERANDS[a] == NUMERIC_OPERANDS[b] {
                        continue;
                    }
                    json!({"numeric": [*rng.pick(&[">", ">="]), NUMERIC_OPERANDS[a], *rng.pick(&["<", "<="]), NUMERIC_OPERANDS[b]]})
                } else {
                    json!({"numeric": [*rng.pick(&ops), numeric_operand(rng)]})
                }
            }
            12 | 13 => anything_but(rng, kind, &s),
            14 if matches!(kind, Kind::Str | Kind::Ip) => json!({"cidr": *rng.pick(CIDRS)}),
            15 if kind == Kind::Ip => Value::from(*rng.pick(IPS)),
            16 => json!({"prefix": ""}),
            _ => continue,
        };
        return candidate;
    }
}

fn anything_but(rng: &mut Rng, kind: Kind, s: &str) -> Value {
    let numbers_ok = !matches!(kind, Kind::Flag | Kind::Ip | Kind::ObjString);
    let strings = |rng: &mut Rng| -> Vec<Value> {
        (0..1 + rng.below(3))
            .map(|_| Value::from(string_for(rng, kind)))
            .collect()
    };
    match rng.below(9) {
        0 => json!({"anything-but": s}),
        1 if numbers_ok => json!({"anything-but": numeric_operand(rng)}),
        2 => json!({"anything-but": strings(rng)}),
        3 if numbers_ok => {
            let list: Vec<Value> = (0..1 + rng.below(3))
                .map(|_| numeric_operand(rng))
                .collect();
            json!({"anything-but": list})
        }
        4 => {
            let p = cut(rng, s, true);
            let p = if p.is_empty() { "c".to_owned() } else { p };
            if rng.chance(30) {
                json!({"anything-but": {"prefix": [p, "us-"]}})
            } else {
                json!({"anything-but": {"prefix": p}})
            }
        }
        5 => {
            let p = cut(rng, s, false);
            let p = if p.is_empty() { ".png".to_owned() } else { p };
            json!({"anything-but": {"suffix": p}})
        }
        6 => {
            if rng.chance(50) {
                json!({"anything-but": {"equals-ignore-case": flip_case(rng, s)}})
            } else {
                let list: Vec<Value> = strings(rng)
                    .into_iter()
                    .map(|v| Value::from(flip_case(rng, v.as_str().unwrap_or_default())))
                    .collect();
                json!({"anything-but": {"equals-ignore-case": list}})
            }
        }
        7 => {
            if rng.chance(60) {
                json!({"anything-but": {"wildcard": glob(rng, s)}})
            } else {
                json!({"anything-but": {"wildcard": [glob(rng, s), "*/lib/*"]}})
            }
        }
        _ => json!({"anything-but": s}),
    }
}

fn leaf(rng: &mut Rng, kind: Kind) -> Value {
    (0..1 + rng.below(3)).map(|_| matcher(rng, kind)).collect()
}

/// Inserts `value` at `path` into `object`, creating intermediate objects.
fn insert(object: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            object.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = object
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// Fields for one conjunction, avoiding paths already used (a path constrained twice in one
/// conjunction is a known divergence, see docs/patterns.md) and any second path under `obj`
/// (arrays of objects are tested through one leaf path only).
fn pick_fields(
    rng: &mut Rng,
    used: &mut Vec<&'static [&'static str]>,
    n: usize,
    under: &[&str],
) -> Vec<(&'static [&'static str], Kind)> {
    let mut out = Vec::new();
    for _ in 0..n * 6 {
        if out.len() == n {
            break;
        }
        let &(path, kind) = rng.pick(FIELDS);
        if !path.starts_with(under) || path.len() == under.len() {
            continue;
        }
        let clash = used.iter().any(|u| {
            u == &path
                || u.starts_with(path)
                || path.starts_with(u)
                || (u.len() >= 2
                    && path.len() >= 2
                    && u[..2] == ["detail", "obj"]
                    && path[..2] == ["detail", "obj"])
        });
        if !clash {
            used.push(path);
            out.push((path, kind));
        }
    }
    out
}

fn conjunction(
    rng: &mut Rng,
    used: &mut Vec<&'static [&'static str]>,
    n: usize,
    under: &[&str],
) -> Map<String, Value> {
    let mut object = Map::new();
    for (path, kind) in pick_fields(rng, used, n, under) {
        let value = leaf(rng, kind);
        insert(&mut object, &path[under.len()..], value);
    }
    object
}

/// `$or` branches (two or three) of fields under `under`, none reusing `used`.
fn or_branches(rng: &mut Rng, used: &[&'static [&'static str]], under: &[&str]) -> Option<Value> {
    let count = 2 + rng.below(2);
    let mut branches = Vec::new();
    for _ in 0..count {
        let mut branch_used = used.to_vec();
        let n = 1 + rng.below(2);
        let mut branch = conjunction(rng, &mut branch_used, n, under);
        if rng.chance(10) {
            if let Some(inner) = or_branches(rng, &branch_used, under) {
                branch.insert("$or".into(), inner);
            }
        }
        if !branch.is_empty() {
            branches.push(Value::Object(branch));
        }
    }
    (branches.len() >= 2).then_some(Value::Array(branches))
}

/// A valid pattern: one to three fields, sometimes a `$or` at the top or under `detail`.
fn valid_pattern(rng: &mut Rng) -> Value {
    let mut used = Vec::new();
    let n = 1 + rng.below(3);
    let mut root = conjunction(rng, &mut used, n, &[]);
    match rng.below(100) {
        0..=19 => {
            if let Some(branches) = or_branches(rng, &used, &[]) {
                root.insert("$or".into(), branches);
            }
        }
        20..=29 => {
            if let Some(branches) = or_branches(rng, &used, &["detail"]) {
                let detail = root
                    .entry("detail")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(detail) = detail {
                    detail.insert("$or".into(), branches);
                }
            }
        }
        _ => {}
    }
    if root.is_empty() {
        root.insert("source".into(), json!(["com.quiltdata"]));
    }
    Value::Object(root)
}

/// Breaks a valid pattern in a way both EventBridge and LocalStack reject.
fn invalid_pattern(rng: &mut Rng) -> Value {
    let broken: Value = rng
        .pick(&[
            json!([{"prefx": "a"}]),
            json!("created"),
            json!(5),
            json!(true),
            json!(null),
            json!([]),
            json!([["created"]]),
            json!([{"prefix": "a", "suffix": "b"}]),
            json!([{}]),
            json!([{"prefix": 5}]),
            json!([{"prefix": ["a"]}]),
            json!([{"prefix": {"ignore-case": "a"}}]),
            json!([{"suffix": null}]),
            json!([{"equals-ignore-case": ["a"]}]),
            json!([{"wildcard": 5}]),
            json!([{"wildcard": "a**b"}]),
            json!([{"cidr": 5}]),
            json!([{"cidr": "10.0.0.0"}]),
            json!([{"cidr": "10.0.0.0/x"}]),
            json!([{"cidr": "abc/8"}]),
            json!([{"cidr": "10.0.0/8"}]),
            json!([{"exists": "true"}]),
            json!([{"numeric": 5}]),
            json!([{"numeric": []}]),
            json!([{"numeric": ["=>", 1]}]),
            json!([{"numeric": [">", "1"]}]),
            json!([{"numeric": ["=", 1, "<", 2]}]),
            json!([{"numeric": ["<", 1, ">", 0]}]),
            json!([{"numeric": [">", 1, ">", 2]}]),
            json!([{"numeric": [">", 5, "<", 1]}]),
            json!([{"numeric": [">", 5, "<", 5]}]),
            json!([{"numeric": [">", 0, "<"]}]),
            json!([{"numeric": [">", 0, "<", 5, "<", 6]}]),
            json!([{"anything-but": null}]),
            json!([{"anything-but": {"numeric": [">", 1]}}]),
            json!([{"anything-but": {"prefix": "a", "suffix": "b"}}]),
            json!([{"anything-but": {"prefix": ""}}]),
            json!([{"anything-but": {"suffix": ""}}]),
            json!([{"anything-but": {"prefix": 5}}]),
            json!([{"anything-but": ["a", null]}]),
            json!([{"anything-but": {"equals-ignore-case": 5}}]),
            json!([{"anything-but": {"wildcard": "a**"}}]),
            json!([{"anything-but": {}}]),
        ])
        .clone();
    let mut pattern = valid_pattern(rng);
    let Value::Object(root) = &mut pattern else {
        return pattern;
    };
    match rng.below(10) {
        0 => {
            root.insert(
                "$or".into(),
                json!([{"detail": {"s": ["a"]}}, {"zz": broken}]),
            );
        }
        1 => {
            root.insert("zz".into(), json!({"inner": broken}));
        }
        _ => {
            root.insert("zz".into(), broken);
        }
    }
    pattern
}

/// Generates `patterns` cases. Valid patterns get up to three events (matching ones preferred,
/// chosen with `matches`), invalid ones a single event.
pub fn generate(
    seed: u64,
    patterns: usize,
    matches: impl Fn(&Value, &Value) -> Option<bool>,
) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    (0..patterns)
        .map(|_| {
            let pattern = if rng.chance(15) {
                invalid_pattern(&mut rng)
            } else {
                valid_pattern(&mut rng)
            };
            let candidates: Vec<Value> = (0..24)
                .map(|_| event(&mut rng))
                .filter(|e| !touches_known_departure(&pattern, e))
                .collect();
            let events = match matches(&pattern, &json!({})) {
                None => candidates.into_iter().take(1).collect(),
                Some(_) => {
                    let (hits, misses): (Vec<Value>, Vec<Value>) = candidates
                        .into_iter()
                        .partition(|e| matches(&pattern, e) == Some(true));
                    hits.into_iter().take(2).chain(misses).take(3).collect()
                }
            };
            Case { pattern, events }
        })
        .collect()
}

/// Whether the pair meets a LocalStack departure that construction cannot rule out: a wildcard
/// whose `*` must match zero characters (LocalStack's `*` needs at least one).
pub fn touches_known_departure(pattern: &Value, event: &Value) -> bool {
    let mut globs = Vec::new();
    collect_globs(pattern, &mut Vec::new(), &mut globs);
    globs.iter().any(|(path, glob)| {
        let mut values = Vec::new();
        values_at(event, path, &mut values);
        values
            .iter()
            .filter_map(|v| v.as_str())
            .any(|s| glob_match(glob, s, 0) != glob_match(glob, s, 1))
    })
}

fn collect_globs(pattern: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let Value::Object(map) = pattern else {
        return;
    };
    for (key, value) in map {
        if key == "$or" {
            for branch in value.as_array().into_iter().flatten() {
                collect_globs(branch, path, out);
            }
            continue;
        }
        path.push(key.clone());
        match value {
            Value::Array(alternatives) => {
                for alt in alternatives {
                    let w = alt
                        .get("wildcard")
                        .or_else(|| alt.get("anything-but").and_then(|a| a.get("wildcard")));
                    match w {
                        Some(Value::String(g)) => out.push((path.clone(), g.clone())),
                        Some(Value::Array(gs)) => {
                            for g in gs.iter().filter_map(Value::as_str) {
                                out.push((path.clone(), g.to_owned()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            other => collect_globs(other, path, out),
        }
        path.pop();
    }
}

/// Every scalar at `path`, looking through arrays at every level.
fn values_at<'a>(value: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    match (value, path) {
        (Value::Array(items), _) => items.iter().for_each(|i| values_at(i, path, out)),
        (v, []) => out.push(v),
        (Value::Object(map), [first, rest @ ..]) => {
            if let Some(v) = map.get(first) {
                values_at(v, rest, out);
            }
        }
        _ => {}
    }
}

/// A glob matcher where each `*` matches at least `min` characters (no escapes: generated
/// globs have none).
fn glob_match(glob: &str, s: &str, min: usize) -> bool {
    fn go(g: &[char], s: &[char], min: usize) -> bool {
        match g.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (min..=s.len()).any(|skip| go(rest, &s[skip..], min)),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..], min),
        }
    }
    let g: Vec<char> = glob.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&g, &s, min)
}

/// Counts of each operator in a corpus, to check the grammar really covers the language.
pub fn operator_counts(cases: &[Case]) -> std::collections::BTreeMap<String, usize> {
    fn walk(v: &Value, counts: &mut std::collections::BTreeMap<String, usize>) {
        match v {
            Value::Object(map) => {
                for (k, inner) in map {
                    if matches!(
                        k.as_str(),
                        "prefix"
                            | "suffix"
                            | "equals-ignore-case"
                            | "anything-but"
                            | "numeric"
                            | "exists"
                            | "wildcard"
                            | "cidr"
                            | "$or"
                    ) {
                        let name = match (k.as_str(), inner) {
                            ("anything-but", Value::Object(m)) => {
                                format!(
                                    "anything-but/{}",
                                    m.keys().next().map_or("", String::as_str)
                                )
                            }
                            ("anything-but", Value::Array(_)) => "anything-but/list".to_owned(),
                            ("prefix" | "suffix", Value::Object(_)) => {
                                format!("{k}/equals-ignore-case")
                            }
                            _ => k.clone(),
                        };
                        *counts.entry(name).or_default() += 1;
                    }
                    walk(inner, counts);
                }
            }
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(_) => *counts.entry("exact string".into()).or_default() += 1,
                        Value::Number(_) => *counts.entry("exact number".into()).or_default() += 1,
                        Value::Bool(_) => *counts.entry("exact boolean".into()).or_default() += 1,
                        Value::Null => *counts.entry("exact null".into()).or_default() += 1,
                        _ => {}
                    }
                    walk(item, counts);
                }
            }
            _ => {}
        }
    }
    let mut counts = std::collections::BTreeMap::new();
    for case in cases {
        walk(&case.pattern, &mut counts);
    }
    counts
}
