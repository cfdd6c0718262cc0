//! A metered JMESPath interpreter for the `JmesPath(json, query)` function.
//!
//! The `jmespath` crate parses the query (its AST is public); evaluation is
//! done here, because the crate's interpreter cannot be bounded: multi-selects
//! share nodes (`[@,@,@,@]` is four pointers to one value), so a query of a
//! few dozen characters describes a value whose expanded size is exponential,
//! and `to_string`, `join`, flattening, equality and serialization all expand
//! it, inside one call, with no way to stop. Here every node evaluated, every
//! element produced or compared and every byte created is charged to the
//! evaluation's [`Meter`] *before* the work is done.
//!
//! Input JSON is never converted: a structured claim ([`ClaimValue::Json`])
//! is read in place through [`Jv::Json`], and JSON text is parsed once into a
//! `serde_json::Value` (charged by a pre-scan of its size) and read the same
//! way. Results are serialized straight into the output string, whose growth
//! is charged before each reallocation.
//!
//! Semantics follow the `jmespath` crate 0.5 (which the evaluator used
//! before), including its choices where the specification is silent: object
//! keys are output sorted, numeric functions work in `f64`. Differences, all
//! in corner cases: `avg([])` is `null` (the crate failed), `to_number` only
//! accepts number text (the crate returned any JSON), an expression reference
//! serializes as `"<expression>"`, and integer overflow in indices and slices
//! cannot panic.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::rc::Rc;

use jmespath::Variable;
use jmespath::ast::{Ast, Comparator};
use serde_json::{Number, Value};

use crate::budget::{BYTES_PER_STEP, COMPARE_BYTES_PER_STEP, Meter, size_of};
use crate::{ClaimValue, EvalErrorKind};

type R<T> = Result<T, EvalErrorKind>;

/// Deepest recursion (query nesting plus data nesting) the interpreter
/// accepts. Queries have at most [`crate::MAX_JMESPATH_OPERATORS`] operators
/// and parsed JSON at most 128 levels, so real use stays far below this; it
/// is a guard for the stack, not a policy limit.
const MAX_NESTING: usize = 512;

/// Bytes charged per element slot of an array the interpreter builds. Vectors
/// built by pushing can hold up to twice their length in capacity.
const ELEM_BYTES: u64 = 2 * size_of::<Jv<'static>>();
/// Bytes charged per entry of an object the interpreter builds (key string,
/// value and B-tree node share), on top of the key's length.
const ENTRY_BYTES: u64 = size_of::<String>() + size_of::<Jv<'static>>() + 16;
/// Largest input JSON object whose fields are found by a scan rather than
/// by hashing the key ([`Jv::obj_get`]).
const LINEAR_LOOKUP_MAX: usize = 16;
/// Header of an `Rc` allocation (strong and weak counts).
const RC_BYTES: u64 = 16;

/// A JMESPath value. Input JSON and query literals are borrowed, values the
/// query builds are reference-counted (cloning is O(1)).
#[derive(Clone, Debug)]
enum Jv<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Rc<str>),
    Arr(Rc<Vec<Jv<'a>>>),
    Obj(Rc<BTreeMap<String, Jv<'a>>>),
    /// A node of the input JSON, read in place.
    Json(&'a Value),
    /// A literal of the query (`` `…` `` or `'…'`), read in place.
    Lit(&'a Variable),
    /// `&expr`, the argument of `map`, `sort_by`, `min_by`, `max_by`.
    Expref(&'a Ast),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Null,
    Bool,
    Num,
    Str,
    Arr,
    Obj,
    Expref,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Null => "null",
            Ty::Bool => "boolean",
            Ty::Num => "number",
            Ty::Str => "string",
            Ty::Arr => "array",
            Ty::Obj => "object",
            Ty::Expref => "expref",
        }
    }
}

enum ArrIter<'x, 'a> {
    Own(std::slice::Iter<'x, Jv<'a>>),
    Json(std::slice::Iter<'a, Value>),
    Lit(std::slice::Iter<'a, jmespath::Rcvar>),
}

impl<'a> Iterator for ArrIter<'_, 'a> {
    type Item = Jv<'a>;
    fn next(&mut self) -> Option<Jv<'a>> {
        match self {
            ArrIter::Own(it) => it.next().cloned(),
            ArrIter::Json(it) => it.next().map(Jv::Json),
            ArrIter::Lit(it) => it.next().map(|r| Jv::Lit(r)),
        }
    }
}

enum ObjIter<'x, 'a> {
    Own(std::collections::btree_map::Iter<'x, String, Jv<'a>>),
    Json(serde_json::map::Iter<'a>),
    Lit(std::collections::btree_map::Iter<'a, String, jmespath::Rcvar>),
}

impl<'x, 'a: 'x> Iterator for ObjIter<'x, 'a> {
    type Item = (&'x str, Jv<'a>);
    fn next(&mut self) -> Option<(&'x str, Jv<'a>)> {
        match self {
            ObjIter::Own(it) => it.next().map(|(k, v)| (k.as_str(), v.clone())),
            ObjIter::Json(it) => it.next().map(|(k, v)| (k.as_str(), Jv::Json(v))),
            ObjIter::Lit(it) => it.next().map(|(k, v)| (k.as_str(), Jv::Lit(v))),
        }
    }
}

impl<'a> Jv<'a> {
    fn ty(&self) -> Ty {
        match self {
            Jv::Null => Ty::Null,
            Jv::Bool(_) => Ty::Bool,
            Jv::Num(_) => Ty::Num,
            Jv::Str(_) => Ty::Str,
            Jv::Arr(_) => Ty::Arr,
            Jv::Obj(_) => Ty::Obj,
            Jv::Expref(_) => Ty::Expref,
            Jv::Json(v) => match v {
                Value::Null => Ty::Null,
                Value::Bool(_) => Ty::Bool,
                Value::Number(_) => Ty::Num,
                Value::String(_) => Ty::Str,
                Value::Array(_) => Ty::Arr,
                Value::Object(_) => Ty::Obj,
            },
            Jv::Lit(v) => match v {
                Variable::Null => Ty::Null,
                Variable::Bool(_) => Ty::Bool,
                Variable::Number(_) => Ty::Num,
                Variable::String(_) => Ty::Str,
                Variable::Array(_) => Ty::Arr,
                Variable::Object(_) => Ty::Obj,
                Variable::Expref(_) => Ty::Expref,
            },
        }
    }

    fn is_null(&self) -> bool {
        self.ty() == Ty::Null
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Jv::Str(s) => Some(s),
            Jv::Json(Value::String(s)) => Some(s),
            Jv::Lit(Variable::String(s)) => Some(s),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<&Number> {
        match self {
            Jv::Num(n) => Some(n),
            Jv::Json(Value::Number(n)) => Some(n),
            Jv::Lit(Variable::Number(n)) => Some(n),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        self.as_number().and_then(Number::as_f64)
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Jv::Bool(b) => Some(*b),
            Jv::Json(Value::Bool(b)) => Some(*b),
            Jv::Lit(Variable::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn as_expref(&self) -> Option<&'a Ast> {
        match self {
            Jv::Expref(a) => Some(a),
            Jv::Lit(Variable::Expref(a)) => Some(a),
            _ => None,
        }
    }

    fn arr_len(&self) -> Option<usize> {
        match self {
            Jv::Arr(a) => Some(a.len()),
            Jv::Json(Value::Array(a)) => Some(a.len()),
            Jv::Lit(Variable::Array(a)) => Some(a.len()),
            _ => None,
        }
    }

    fn arr_iter(&self) -> Option<ArrIter<'_, 'a>> {
        match self {
            Jv::Arr(a) => Some(ArrIter::Own(a.iter())),
            Jv::Json(Value::Array(a)) => Some(ArrIter::Json(a.iter())),
            Jv::Lit(Variable::Array(a)) => Some(ArrIter::Lit(a.iter())),
            _ => None,
        }
    }

    fn arr_get(&self, i: usize) -> Option<Jv<'a>> {
        match self {
            Jv::Arr(a) => a.get(i).cloned(),
            Jv::Json(Value::Array(a)) => a.get(i).map(Jv::Json),
            Jv::Lit(Variable::Array(a)) => a.get(i).map(|r| Jv::Lit(r)),
            _ => None,
        }
    }

    fn obj_len(&self) -> Option<usize> {
        match self {
            Jv::Obj(o) => Some(o.len()),
            Jv::Json(Value::Object(o)) => Some(o.len()),
            Jv::Lit(Variable::Object(o)) => Some(o.len()),
            _ => None,
        }
    }

    /// Entries in storage order (sorted except for input JSON objects).
    fn obj_iter(&self) -> Option<ObjIter<'_, 'a>> {
        match self {
            Jv::Obj(o) => Some(ObjIter::Own(o.iter())),
            Jv::Json(Value::Object(o)) => Some(ObjIter::Json(o.iter())),
            Jv::Lit(Variable::Object(o)) => Some(ObjIter::Lit(o.iter())),
            _ => None,
        }
    }

    fn obj_get(&self, key: &str) -> Option<Jv<'a>> {
        match self {
            Jv::Obj(o) => o.get(key).cloned(),
            // Keys are unique, so a scan finds what the hash lookup finds;
            // on the small objects of real claims (a few keys) comparing
            // lengths and bytes is far cheaper than hashing the key.
            Jv::Json(Value::Object(o)) if o.len() <= LINEAR_LOOKUP_MAX => o
                .iter()
                .find(|(k, _)| same_str(k, key))
                .map(|(_, v)| Jv::Json(v)),
            Jv::Json(Value::Object(o)) => o.get(key).map(Jv::Json),
            Jv::Lit(Variable::Object(o)) => o.get(key).map(|r| Jv::Lit(r)),
            _ => None,
        }
    }

    fn truthy(&self) -> bool {
        match self.ty() {
            Ty::Bool => self.as_bool().unwrap_or(false),
            Ty::Str => self.as_str().is_some_and(|s| !s.is_empty()),
            Ty::Arr => self.arr_len().is_some_and(|n| n > 0),
            Ty::Obj => self.obj_len().is_some_and(|n| n > 0),
            Ty::Num => true,
            Ty::Null | Ty::Expref => false,
        }
    }
}

/// String equality for the short strings of field names and filter
/// literals: lengths first, then up to 16 bytes compared as two
/// (overlapping) 8-byte words or, below 8 bytes, byte by byte, instead of
/// a `memcmp` call, which costs more than such a comparison.
#[inline]
fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_ne_bytes)
    };
    match a.len() {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        n @ 8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// `jmespath` 0.5's number equality: relative error for normal numbers.
fn float_eq(a: f64, b: f64) -> bool {
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if !a.is_normal() || !b.is_normal() {
        diff < (f64::EPSILON * f64::MIN_POSITIVE)
    } else {
        diff / (a.abs() + b.abs()) < f64::EPSILON
    }
}

/// `jmespath` 0.5's ordering: strings and numbers order, anything else (and
/// values of different types) compare equal.
fn order(a: &Jv<'_>, b: &Jv<'_>) -> Ordering {
    match (a.ty(), b.ty()) {
        (Ty::Str, Ty::Str) => a.as_str().cmp(&b.as_str()),
        (Ty::Num, Ty::Num) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Less),
            _ => Ordering::Equal,
        },
        _ => Ordering::Equal,
    }
}

fn err(msg: impl Into<String>) -> EvalErrorKind {
    EvalErrorKind::JmesPath(msg.into())
}

fn nesting_limit() -> EvalErrorKind {
    EvalErrorKind::Limit(format!("JmesPath nesting exceeds {MAX_NESTING} levels"))
}

/// Steps charged per JMESPath node evaluated.
const NODE_STEPS: u64 = 2;
/// Extra steps charged per field lookup (hashing the key, probing the map).
const FIELD_STEPS: u64 = 8;

/// What parsing JSON text costs, from one cheap pass over its bytes: an
/// upper bound of the heap `serde_json` builds, and the steps it takes.
///
/// Heap: the text (strings and keys are copied out of it) plus, per
/// container, what `serde_json` allocates as it grows: an array's first
/// allocation holds 4 values, then it doubles (so at most 2 slots per
/// further element); an object (`IndexMap`) starts with a 4-bucket index and
/// 3 entries and grows the same way. Values sit in their container's slots.
/// Which container a `,` belongs to is tracked 128 levels deep (deeper,
/// `serde_json` refuses the text; the scan then assumes arrays, the dearer).
///
/// Steps weigh what is expensive to build: an object (`{`) far more than an
/// array (`[`), an element (`,`, `:`) more than a plain byte.
pub(crate) fn json_text_cost(text: &str) -> (u64, u64) {
    const VALUE: u64 = size_of::<Value>();
    const ENTRY: u64 = 8 + size_of::<String>() + size_of::<Value>();
    const ARRAY_FIRST: u64 = 4 * VALUE;
    const ARRAY_MORE: u64 = 2 * VALUE;
    const MAP_FIRST: u64 = 4 * 9 + 16 + 3 * ENTRY;
    const MAP_MORE: u64 = 2 * ENTRY + 3 * 9;
    let mut bytes: u64 = text.len() as u64;
    let mut steps: u64 = 1 + text.len() as u64 / 8;
    // Bit `d` is set when the container at depth `d` (1-based) is an object.
    let mut objects: u128 = 0;
    let mut depth: u32 = 0;
    let mut in_string = false;
    let mut escaped = false;
    let raw = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            } else {
                // Jump to the next quote or backslash: string contents
                // (base64 data, names) are most of real texts.
                let rest = raw.get(i..).unwrap_or_default();
                i += memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                let bit = 1u128.checked_shl(depth).unwrap_or(0);
                if b == b'{' {
                    objects |= bit;
                    bytes += MAP_FIRST;
                    steps += 64;
                } else {
                    objects &= !bit;
                    bytes += ARRAY_FIRST;
                    steps += 16;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b':' => {
                bytes += MAP_MORE;
                steps += 12;
            }
            b',' => {
                let in_object = 1u128
                    .checked_shl(depth)
                    .is_some_and(|bit| objects & bit != 0);
                // An object's entries are charged at their ':'.
                if !in_object {
                    bytes += ARRAY_MORE;
                }
                steps += 12;
            }
            _ => {}
        }
    }
    (bytes, steps)
}

/// Parses JSON text after charging its parse cost (memory held until the
/// caller releases it, and steps proportional to its size and shape).
pub(crate) fn parse_json_text(
    text: &str,
    meter: &mut Meter<'_>,
) -> R<Result<Value, serde_json::Error>> {
    meter.step(1 + text.len() as u64 / BYTES_PER_STEP)?; // the pre-scan
    let (bytes, steps) = json_text_cost(text);
    meter.alloc(bytes)?;
    meter.step(steps)?;
    Ok(serde_json::from_str::<Value>(text))
}

/// The JMESPath queries that are string literals of a policy
/// (`JmesPath(c.value, "…")`), parsed once when the policy is compiled and
/// shared by every evaluation of it (and by its clones).
#[derive(Default)]
pub(crate) struct Queries {
    parsed: std::collections::HashMap<String, std::sync::Arc<Ast>>,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queries({} compiled)", self.parsed.len())
    }
}

impl Queries {
    /// Adds `query` when it passes the checks an evaluation applies
    /// ([`crate::eval::query_acceptable`]) and parses; a query that does
    /// not is left out, so that evaluating it gives the error it always
    /// gave. The number of entries is bounded by the policy's size.
    pub(crate) fn add(&mut self, query: &str) {
        if self.parsed.contains_key(query) || !crate::eval::query_acceptable(query) {
            return;
        }
        if let Ok(ast) = parse_query(query) {
            self.parsed
                .insert(query.to_string(), std::sync::Arc::new(ast));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.parsed.len()
    }

    pub(crate) fn get(&self, query: &str) -> Option<std::sync::Arc<Ast>> {
        // A real policy has a handful of queries, each a few hundred bytes:
        // comparing lengths (and the bytes of the one that matches) costs
        // far less than hashing the query. Larger sets are hashed.
        if self.parsed.len() <= 16 {
            return self
                .parsed
                .iter()
                .find(|(q, _)| q.as_str() == query)
                .map(|(_, ast)| std::sync::Arc::clone(ast));
        }
        self.parsed.get(query).cloned()
    }
}

/// The queries that are literals of `rules` (the second argument of a
/// `JmesPath` call, anywhere in a condition or an action).
pub(crate) fn compile_queries<'r>(rules: impl Iterator<Item = &'r crate::ast::Rule>) -> Queries {
    use crate::ast::{Action, ClaimSpec, Expr, ExprKind, Func};
    fn walk(e: &Expr, q: &mut Queries) {
        if let ExprKind::Call { func, args } = &e.kind {
            if let (Func::JmesPath, [_, query]) = (func, args.as_slice())
                && let ExprKind::Str(text) = &query.kind
            {
                q.add(text.as_str());
            }
            for a in args {
                walk(a, q);
            }
        }
    }
    let mut q = Queries::default();
    for rule in rules {
        for cond in &rule.conditions {
            for p in &cond.props {
                walk(&p.rhs, &mut q);
            }
        }
        if let Action::Add(spec) | Action::Issue(spec) | Action::IssueProperty(spec) = &rule.action
            && let ClaimSpec::Fields {
                claim_type,
                value,
                value_type,
                issuer,
            } = spec
        {
            for e in [
                Some(claim_type),
                Some(value),
                value_type.as_ref(),
                issuer.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                walk(e, &mut q);
            }
        }
    }
    q
}

/// Most JSON texts one evaluation keeps parsed ([`Caches`]).
const MAX_CACHED_TEXTS: usize = 8;
/// Deepest `JmesPath` result returned structured ([`crate::JsonString`]):
/// deeper results are returned as text. Far below the 128 levels
/// `serde_json` accepts when parsing, and bounds the recursion of writing
/// the text later.
const MAX_STRUCTURED_DEPTH: usize = 64;

/// Per evaluation: the policy's compiled queries and the JSON texts of
/// claims already parsed (one claim queried by several rules), so that no
/// text is parsed twice. (A `JmesPath` result that a later rule queries is
/// not text at all: it is a [`crate::JsonString`], read in place.)
///
/// Parsed texts are those of claims' values (and of the policy's string
/// literals), keyed by their address and length: a claim's value lives,
/// unchanged, until the evaluation ends (incoming claims are borrowed from
/// the caller, added ones are kept in the trace, which only grows; the
/// policy is borrowed for the whole evaluation), so no other text can
/// appear at that address while the cache exists. Texts built by a
/// function for one call (`JmesPath(AppendString(…), …)`) are parsed for
/// that call and dropped, as before.
///
/// Bounded: at most [`MAX_CACHED_TEXTS`] texts and [`Meter::cache_cap`]
/// bytes, charged with [`Meter::hold`] until the evaluation ends; a text
/// that does not fit is parsed for the call and dropped.
#[derive(Default)]
pub(crate) struct Caches {
    pub(crate) queries: std::sync::Arc<Queries>,
    texts: Vec<((usize, usize), Rc<Value>)>,
}

impl Caches {
    fn find(&self, key: (usize, usize)) -> Option<Rc<Value>> {
        self.texts
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| Rc::clone(v))
    }
}

/// The JSON value of a claim's text: from the evaluation's cache when it was
/// parsed before, else parsed and charged as [`parse_json_text`] does, and
/// kept (its memory held to the end) when the cache has room.
fn cached_json(text: &str, meter: &mut Meter<'_>) -> R<Rc<Value>> {
    let f = "JmesPath";
    let key = (text.as_ptr() as usize, text.len());
    meter.step(1 + meter.jmes.texts.len() as u64)?;
    if let Some(v) = meter.jmes.find(key) {
        return Ok(v);
    }
    meter.step(1 + text.len() as u64 / BYTES_PER_STEP)?; // the pre-scan
    let (bytes, steps) = json_text_cost(text);
    let entry = bytes.saturating_add(2 * size_of::<((usize, usize), Rc<Value>)>() + RC_BYTES);
    let keep = meter.jmes.texts.len() < MAX_CACHED_TEXTS
        && meter.held().saturating_add(entry) <= meter.cache_cap();
    if keep {
        meter.hold(entry)?;
    } else {
        meter.alloc(bytes)?;
    }
    meter.step(steps)?;
    let parsed = serde_json::from_str::<Value>(text).map_err(|e| {
        crate::eval::fn_err_named(f, format!("the first argument is not valid JSON text: {e}"))
    })?;
    let parsed = Rc::new(parsed);
    if keep {
        meter.jmes.texts.push((key, Rc::clone(&parsed)));
    }
    Ok(parsed)
}

/// Parses a query with the `jmespath` crate; a panic inside the third-party
/// parser becomes an error (defence in depth).
fn parse_query(query: &str) -> Result<Ast, String> {
    match std::panic::catch_unwind(|| jmespath::parse(query)) {
        Ok(Ok(ast)) => Ok(ast),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the JMESPath parser failed".into()),
    }
}

/// `JmesPath(json, query)` after the query has passed the length and
/// operator checks: the JSON text of the result, as a String claim value.
/// An array or object result is returned as a [`crate::JsonString`]: the
/// structure, its text written only when something reads it (a later rule
/// querying it reads the structure). A query the policy compiled is not
/// parsed again (nor charged for parsing).
///
/// `claim` says that `data` is the value of a claim (which lives until the
/// evaluation ends): its text may then be parsed once and cached
/// ([`Caches`]).
pub(crate) fn search(
    data: &ClaimValue,
    claim: bool,
    query: &str,
    compiled: Option<std::sync::Arc<Ast>>,
    meter: &mut Meter<'_>,
) -> R<ClaimValue> {
    let f = "JmesPath";
    let mark = meter.live();
    let ast = match compiled {
        Some(ast) => ast,
        None => {
            // Parsing is linear in the query (at most MAX_JMESPATH_QUERY_BYTES).
            meter.step(1 + query.len() as u64)?;
            meter.alloc(query.len() as u64 * 8)?;
            std::sync::Arc::new(parse_query(query).map_err(err)?)
        }
    };
    let parsed;
    let root: Jv<'_> = match data {
        ClaimValue::String(s) => {
            if s.is_empty() {
                return Err(crate::eval::fn_err_named(f, "the JSON argument is empty"));
            }
            parsed = if claim {
                cached_json(s, meter)?
            } else {
                Rc::new(parse_json_text(s, meter)?.map_err(|e| {
                    crate::eval::fn_err_named(
                        f,
                        format!("the first argument is not valid JSON text: {e}"),
                    )
                })?)
            };
            Jv::Json(parsed.as_ref())
        }
        ClaimValue::JsonString(j) => Jv::Json(j.value()),
        ClaimValue::Json(j) => Jv::Json(j),
        ClaimValue::Integer(i) => Jv::Num(Number::from(*i)),
        ClaimValue::Bool(b) => Jv::Bool(*b),
    };
    let mut it = Interp { meter };
    let result = it.eval(&root, &ast, 0)?;
    if structured_results() && matches!(result.ty(), Ty::Arr | Ty::Obj) {
        // A copy can take several times the memory of its text (an array
        // of small numbers: 32 bytes per element against 2): results whose
        // copy would take more than an eighth of the memory budget are
        // returned as text, as they always were.
        let mut sizes = Sizes::new(it.meter.cache_cap());
        if let Some(value) = it.own(&result, 0, &mut sizes)? {
            // The text is charged now, as if written (its bytes and the
            // work); it is written from the value when something reads it.
            it.meter.step(1 + sizes.text / BYTES_PER_STEP)?;
            drop(result);
            let text_len = usize::try_from(sizes.text).map_err(|_| err("result too large"))?;
            let out = crate::JsonString::new(value, text_len, sizes.heap);
            // Everything but the result is dropped when this returns.
            it.meter.release_to(mark);
            it.meter.alloc(out.heap_bytes())?;
            return Ok(ClaimValue::JsonString(out));
        }
        // Deeper than MAX_STRUCTURED_DEPTH, or too large: returned as text.
    }
    let text = it.serialize(&result)?;
    let out = text.capacity() as u64;
    drop(result);
    // Everything but the output text (and what the cache holds) is dropped
    // when this returns.
    it.meter.release_to(mark);
    it.meter.alloc(out)?;
    Ok(ClaimValue::String(text))
}

/// Whether array and object results are returned structured (tests turn
/// it off to compare with the text every result used to be).
fn structured_results() -> bool {
    #[cfg(test)]
    if !tests::STRUCTURED_RESULTS.with(std::cell::Cell::get) {
        return false;
    }
    true
}

/// What a result copied by [`Interp::own`] amounts to.
#[derive(Clone, Copy)]
struct Sizes {
    /// Length of its JSON text.
    text: u64,
    /// Heap bytes of the copy (what `json_heap_bytes` in `eval.rs` counts).
    heap: u64,
    /// Most bytes (copy and text) a result may take to be kept structured.
    cap: u64,
}

impl Sizes {
    fn new(cap: u64) -> Sizes {
        Sizes {
            text: 0,
            heap: 0,
            cap,
        }
    }

    fn over_cap(&self) -> bool {
        self.heap.saturating_add(self.text) > self.cap
    }
}

/// Length of `s` written as a JSON string, quotes and escapes included,
/// exactly as `serde_json` (and [`Out::put_quoted`]) write it.
fn quoted_len(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut n = bytes.len() as u64 + 2;
    // Most strings need no escape: one branch-free (vectorized) pass.
    let plain = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if !plain {
        for &b in bytes {
            n += match b {
                b'"' | b'\\' | 0x08 | 0x0C | b'\n' | b'\r' | b'\t' => 1,
                0x00..=0x1F => 5,
                _ => 0,
            };
        }
    }
    n
}

/// Length of a number's JSON text (its `Display`, which writing uses):
/// integers by counting digits, other numbers by formatting them.
fn number_len(n: &Number) -> u64 {
    let digits = |u: u64| u64::from(u.checked_ilog10().unwrap_or(0)) + 1;
    if let Some(u) = n.as_u64() {
        return digits(u);
    }
    if let Some(i) = n.as_i64() {
        return 1 + digits(i.unsigned_abs());
    }
    struct Count(u64);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len() as u64;
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut count, format_args!("{n}"));
    count.0
}

/// How an expression reference is written (a JSON string).
const EXPREF_TEXT: &str = "<expression>";

struct Interp<'m, 'b> {
    meter: &'m mut Meter<'b>,
}

impl<'a> Interp<'_, '_> {
    /// An array built from exactly `items` (already charged by the caller
    /// through [`Self::slot`]).
    fn array(&mut self, items: Vec<Jv<'a>>) -> R<Jv<'a>> {
        self.meter.alloc(RC_BYTES)?;
        Ok(Jv::Arr(Rc::new(items)))
    }

    /// Charges one element slot about to be pushed.
    #[inline]
    fn slot(&mut self) -> R<()> {
        self.meter.alloc(ELEM_BYTES)?;
        self.meter.step(1)
    }

    fn string(&mut self, s: &str) -> R<Jv<'a>> {
        self.meter.produce(s.len() as u64 + RC_BYTES)?;
        Ok(Jv::Str(Rc::from(s)))
    }

    fn number(&mut self, f: f64, what: &str) -> R<Jv<'a>> {
        Number::from_f64(f)
            .map(Jv::Num)
            .ok_or_else(|| err(format!("{what}: the result is not a finite number")))
    }

    fn eval(&mut self, data: &Jv<'a>, node: &'a Ast, depth: usize) -> R<Jv<'a>> {
        self.meter.step(NODE_STEPS)?;
        if depth > MAX_NESTING {
            return Err(nesting_limit());
        }
        let d = depth + 1;
        match node {
            Ast::Field { name, .. } => {
                self.meter
                    .step(FIELD_STEPS + name.len() as u64 / BYTES_PER_STEP)?;
                Ok(data.obj_get(name).unwrap_or(Jv::Null))
            }
            Ast::Subexpr { lhs, rhs, .. } => {
                let left = self.operand(data, lhs, d)?;
                self.operand(&left, rhs, d)
            }
            Ast::Identity { .. } => Ok(data.clone()),
            Ast::Literal { value, .. } => Ok(Jv::Lit(value)),
            Ast::Or { lhs, rhs, .. } => {
                let left = self.eval(data, lhs, d)?;
                if left.truthy() {
                    Ok(left)
                } else {
                    self.eval(data, rhs, d)
                }
            }
            Ast::And { lhs, rhs, .. } => {
                let left = self.eval(data, lhs, d)?;
                if !left.truthy() {
                    Ok(left)
                } else {
                    self.eval(data, rhs, d)
                }
            }
            Ast::Condition {
                predicate, then, ..
            } => {
                let c = self.eval(data, predicate, d)?;
                if c.truthy() {
                    self.operand(data, then, d)
                } else {
                    Ok(Jv::Null)
                }
            }
            Ast::Comparison {
                comparator,
                lhs,
                rhs,
                ..
            } => {
                let left = self.operand(data, lhs, d)?;
                let right = self.operand(data, rhs, d)?;
                self.compare(comparator, &left, &right, d)
            }
            Ast::Index { idx, .. } => Ok(index(data, *idx).unwrap_or(Jv::Null)),
            Ast::Not { node, .. } => {
                let v = self.eval(data, node, d)?;
                Ok(Jv::Bool(!v.truthy()))
            }
            Ast::ObjectValues { node, .. } => {
                let subject = self.eval(data, node, d)?;
                match self.sorted_entries(&subject)? {
                    Some(entries) => {
                        self.meter.alloc(entries.len() as u64 * ELEM_BYTES)?;
                        let values = entries.into_iter().map(|(_, v)| v).collect();
                        self.array(values)
                    }
                    None => Ok(Jv::Null),
                }
            }
            Ast::Projection { lhs, rhs, .. } => {
                let left = self.eval(data, lhs, d)?;
                let Some(items) = left.arr_iter() else {
                    return Ok(Jv::Null);
                };
                let mut collected = Vec::new();
                for item in items {
                    let v = self.eval(&item, rhs, d)?;
                    if !v.is_null() {
                        self.slot()?;
                        collected.push(v);
                    }
                }
                self.array(collected)
            }
            Ast::Flatten { node, .. } => {
                let v = self.eval(data, node, d)?;
                let Some(items) = v.arr_iter() else {
                    return Ok(Jv::Null);
                };
                let mut collected = Vec::new();
                for item in items {
                    match item.arr_iter() {
                        Some(inner) => {
                            for x in inner {
                                self.slot()?;
                                collected.push(x);
                            }
                        }
                        None => {
                            self.slot()?;
                            collected.push(item);
                        }
                    }
                }
                self.array(collected)
            }
            Ast::MultiList { elements, .. } => {
                if data.is_null() {
                    return Ok(Jv::Null);
                }
                let mut collected = Vec::new();
                for e in elements {
                    let v = self.eval(data, e, d)?;
                    self.slot()?;
                    collected.push(v);
                }
                self.array(collected)
            }
            Ast::MultiHash { elements, .. } => {
                if data.is_null() {
                    return Ok(Jv::Null);
                }
                let mut map = BTreeMap::new();
                for kv in elements {
                    let v = self.eval(data, &kv.value, d)?;
                    self.meter.produce(ENTRY_BYTES + kv.key.len() as u64)?;
                    map.insert(kv.key.clone(), v);
                }
                self.meter.alloc(RC_BYTES)?;
                Ok(Jv::Obj(Rc::new(map)))
            }
            Ast::Function { name, args, .. } => {
                let mut values = Vec::with_capacity(args.len());
                self.meter.alloc(args.len() as u64 * ELEM_BYTES)?;
                for a in args {
                    values.push(self.eval(data, a, d)?);
                }
                self.call(name, &values, d)
            }
            Ast::Expref { ast, .. } => Ok(Jv::Expref(ast)),
            Ast::Slice {
                start, stop, step, ..
            } => self.slice(data, *start, *stop, *step),
        }
    }

    /// [`Self::eval`] of a comparison's operand or a sub-expression's part:
    /// the two commonest nodes there, a field of the current value and a
    /// literal, are evaluated here (charged as `eval` charges them) rather
    /// than through the general dispatch, which costs more than they do.
    #[inline]
    fn operand(&mut self, data: &Jv<'a>, node: &'a Ast, depth: usize) -> R<Jv<'a>> {
        match node {
            Ast::Field { name, .. } => {
                self.meter
                    .step(NODE_STEPS + FIELD_STEPS + name.len() as u64 / BYTES_PER_STEP)?;
                Ok(data.obj_get(name).unwrap_or(Jv::Null))
            }
            Ast::Literal { value, .. } => {
                self.meter.step(NODE_STEPS)?;
                Ok(Jv::Lit(value))
            }
            Ast::Identity { .. } => {
                self.meter.step(NODE_STEPS)?;
                Ok(data.clone())
            }
            _ => self.eval(data, node, depth),
        }
    }

    fn compare(&mut self, cmp: &Comparator, l: &Jv<'a>, r: &Jv<'a>, depth: usize) -> R<Jv<'a>> {
        // Two strings (a field against a literal, in most filters): compared
        // here, charged as `equal` charges them.
        if let (Comparator::Equal | Comparator::NotEqual, Some(x), Some(y)) =
            (cmp, l.as_str(), r.as_str())
        {
            self.meter.step(NODE_STEPS + 1)?;
            if x.len() == y.len() {
                self.meter.step(x.len() as u64 / COMPARE_BYTES_PER_STEP)?;
            }
            return Ok(Jv::Bool(same_str(x, y) == matches!(cmp, Comparator::Equal)));
        }
        let numbers = l.ty() == Ty::Num && r.ty() == Ty::Num;
        Ok(match cmp {
            Comparator::Equal => Jv::Bool(self.equal(l, r, depth)?),
            Comparator::NotEqual => Jv::Bool(!self.equal(l, r, depth)?),
            _ if !numbers => Jv::Null,
            Comparator::LessThan => Jv::Bool(order(l, r) == Ordering::Less),
            Comparator::LessThanEqual => Jv::Bool(order(l, r) != Ordering::Greater),
            Comparator::GreaterThan => Jv::Bool(order(l, r) == Ordering::Greater),
            Comparator::GreaterThanEqual => Jv::Bool(order(l, r) != Ordering::Less),
        })
    }

    /// Deep equality, charged per node visited (shared nodes short-cut).
    fn equal(&mut self, a: &Jv<'a>, b: &Jv<'a>, depth: usize) -> R<bool> {
        self.meter.step(NODE_STEPS + 1)?;
        if depth > MAX_NESTING {
            return Err(nesting_limit());
        }
        let same = match (a, b) {
            (Jv::Arr(x), Jv::Arr(y)) => Rc::ptr_eq(x, y),
            (Jv::Obj(x), Jv::Obj(y)) => Rc::ptr_eq(x, y),
            (Jv::Json(x), Jv::Json(y)) => std::ptr::eq(*x, *y),
            (Jv::Lit(x), Jv::Lit(y)) => std::ptr::eq(*x, *y),
            _ => false,
        };
        if same {
            return Ok(true);
        }
        let ty = a.ty();
        if ty != b.ty() {
            return Ok(false);
        }
        Ok(match ty {
            Ty::Null => true,
            Ty::Bool => a.as_bool() == b.as_bool(),
            Ty::Num => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => float_eq(x, y),
                _ => false,
            },
            Ty::Str => {
                let (x, y) = (a.as_str().unwrap_or(""), b.as_str().unwrap_or(""));
                if x.len() == y.len() {
                    self.meter.step(x.len() as u64 / COMPARE_BYTES_PER_STEP)?;
                }
                x == y
            }
            Ty::Arr => {
                if a.arr_len() != b.arr_len() {
                    return Ok(false);
                }
                let (Some(xs), Some(ys)) = (a.arr_iter(), b.arr_iter()) else {
                    return Ok(false);
                };
                for (x, y) in xs.zip(ys) {
                    if !self.equal(&x, &y, depth + 1)? {
                        return Ok(false);
                    }
                }
                true
            }
            Ty::Obj => {
                if a.obj_len() != b.obj_len() {
                    return Ok(false);
                }
                let Some(entries) = a.obj_iter() else {
                    return Ok(false);
                };
                for (k, x) in entries {
                    self.meter
                        .step(FIELD_STEPS + k.len() as u64 / BYTES_PER_STEP)?;
                    match b.obj_get(k) {
                        Some(y) => {
                            if !self.equal(&x, &y, depth + 1)? {
                                return Ok(false);
                            }
                        }
                        None => return Ok(false),
                    }
                }
                true
            }
            Ty::Expref => match (a.as_expref(), b.as_expref()) {
                (Some(x), Some(y)) => std::ptr::eq(x, y) || x == y,
                _ => false,
            },
        })
    }

    /// Object entries in key order (input JSON objects keep insertion
    /// order, so they are sorted here, as `jmespath` 0.5 did). `None` when
    /// not an object.
    #[allow(clippy::type_complexity)]
    fn sorted_entries<'x>(&mut self, v: &'x Jv<'a>) -> R<Option<Vec<(&'x str, Jv<'a>)>>> {
        let (Some(n), Some(iter)) = (v.obj_len(), v.obj_iter()) else {
            return Ok(None);
        };
        let n64 = n as u64;
        self.meter
            .alloc(n64 * (size_of::<(&str, Jv<'static>)>()) + RC_BYTES)?;
        self.meter
            .step(1 + n64.saturating_mul(1 + u64::from(n64.max(1).ilog2())))?;
        let mut entries: Vec<(&'x str, Jv<'a>)> = Vec::with_capacity(n);
        entries.extend(iter);
        if matches!(v, Jv::Json(_)) {
            entries.sort_by(|x, y| x.0.cmp(y.0));
        }
        Ok(Some(entries))
    }

    fn slice(
        &mut self,
        data: &Jv<'a>,
        start: Option<i32>,
        stop: Option<i32>,
        step: i32,
    ) -> R<Jv<'a>> {
        if step == 0 {
            return Err(err("invalid slice: the step cannot be 0"));
        }
        let Some(len) = data.arr_len() else {
            return Ok(Jv::Null);
        };
        let len = len as i64;
        let step = i64::from(step);
        let adjust = |end: i64| -> i64 {
            if end < 0 {
                let e = end + len;
                if e >= 0 {
                    e
                } else if step < 0 {
                    -1
                } else {
                    0
                }
            } else if end < len {
                end
            } else if step < 0 {
                len - 1
            } else {
                len
            }
        };
        let mut out = Vec::new();
        if len == 0 {
            return self.array(out);
        }
        let a = match start {
            Some(s) => adjust(i64::from(s)),
            None if step < 0 => len - 1,
            None => 0,
        };
        let b = match stop {
            Some(s) => adjust(i64::from(s)),
            None if step < 0 => -1,
            None => len,
        };
        let mut i = a;
        while (step > 0 && i < b) || (step < 0 && i > b) {
            let item = usize::try_from(i).ok().and_then(|i| data.arr_get(i));
            if let Some(item) = item {
                self.slot()?;
                out.push(item);
            }
            i = i.saturating_add(step);
        }
        self.array(out)
    }

    /// Serializes `v` as compact JSON text (as `serde_json` writes it, with
    /// object keys sorted), charging each growth of the string first.
    fn serialize(&mut self, v: &Jv<'a>) -> R<String> {
        let mut out = Out { buf: String::new() };
        self.write(v, &mut out, 0)?;
        Ok(out.buf)
    }

    /// An owned copy of a result, the value parsing its text would build
    /// (an expression reference as the string `"<expression>"`; objects
    /// copied from the input keep their key order, which
    /// [`json_string_text`] sorts), with the length of that text and the copy's heap
    /// size added to `sizes`. Memory is charged before each allocation, one
    /// node step per value. `None` when the result is deeper than
    /// [`MAX_STRUCTURED_DEPTH`] or larger than `sizes.cap` (what was charged
    /// is the caller's to release).
    fn own(&mut self, v: &Jv<'a>, depth: usize, sizes: &mut Sizes) -> R<Option<Value>> {
        if let Jv::Json(j) = v {
            // Input JSON: sized in one read-only walk, then copied whole
            // (cheaper than building each map key by key, which hashes
            // every key). Its objects keep their order: the text is written
            // sorted, and queries read objects in sorted order.
            let before = sizes.heap;
            if !self.json_sizes(j, depth, sizes)? || sizes.over_cap() {
                return Ok(None);
            }
            self.meter.produce(sizes.heap - before)?;
            return Ok(Some((*j).clone()));
        }
        self.meter.step(NODE_STEPS)?;
        if depth > MAX_STRUCTURED_DEPTH || sizes.over_cap() {
            return Ok(None);
        }
        Ok(Some(match v.ty() {
            Ty::Null => {
                sizes.text += 4;
                Value::Null
            }
            Ty::Bool => {
                let b = v.as_bool().unwrap_or(false);
                sizes.text += if b { 4 } else { 5 };
                Value::Bool(b)
            }
            Ty::Num => {
                let n = v.as_number().cloned().unwrap_or_else(|| Number::from(0));
                sizes.text += number_len(&n);
                Value::Number(n)
            }
            Ty::Str | Ty::Expref => {
                let s = v.as_str().unwrap_or(EXPREF_TEXT);
                self.meter.produce(s.len() as u64)?;
                sizes.text += quoted_len(s);
                sizes.heap += s.len() as u64;
                Value::String(s.to_owned())
            }
            Ty::Arr => {
                let n = v.arr_len().unwrap_or(0);
                let slots = n as u64 * size_of::<Value>();
                self.meter.alloc(slots)?;
                sizes.heap += slots;
                sizes.text += 2 + (n as u64).saturating_sub(1);
                let mut items = Vec::with_capacity(n);
                for item in v.arr_iter().into_iter().flatten() {
                    let Some(x) = self.own(&item, depth + 1, sizes)? else {
                        return Ok(None);
                    };
                    items.push(x);
                }
                Value::Array(items)
            }
            Ty::Obj => {
                // Built objects and query literals are B-tree maps: their
                // entries come in key order (input JSON took the path above).
                let n = v.obj_len().unwrap_or(0);
                let table = crate::eval::json_map_bytes(n);
                self.meter.alloc(table)?;
                sizes.heap += table;
                sizes.text += 2 + (n as u64).saturating_sub(1);
                let mut map = serde_json::Map::with_capacity(n);
                for (k, item) in v.obj_iter().into_iter().flatten() {
                    self.meter.produce(k.len() as u64)?;
                    sizes.text += quoted_len(k) + 1;
                    sizes.heap += k.len() as u64;
                    let Some(x) = self.own(&item, depth + 1, sizes)? else {
                        return Ok(None);
                    };
                    map.insert(k.to_owned(), x);
                }
                Value::Object(map)
            }
        }))
    }

    /// [`Self::own`]'s sizes of an input JSON value, one node step per
    /// value; `false` when it is deeper than [`MAX_STRUCTURED_DEPTH`] or
    /// larger than `sizes.cap`.
    fn json_sizes(&mut self, v: &Value, depth: usize, sizes: &mut Sizes) -> R<bool> {
        self.meter.step(NODE_STEPS)?;
        if depth > MAX_STRUCTURED_DEPTH || sizes.over_cap() {
            return Ok(false);
        }
        match v {
            Value::Null => sizes.text += 4,
            Value::Bool(b) => sizes.text += if *b { 4 } else { 5 },
            Value::Number(n) => sizes.text += number_len(n),
            Value::String(s) => {
                sizes.text += quoted_len(s);
                sizes.heap += s.len() as u64;
            }
            Value::Array(items) => {
                sizes.text += 2 + (items.len() as u64).saturating_sub(1);
                sizes.heap += items.len() as u64 * size_of::<Value>();
                for item in items {
                    if !self.json_sizes(item, depth + 1, sizes)? {
                        return Ok(false);
                    }
                }
            }
            Value::Object(map) => {
                sizes.text += 2 + (map.len() as u64).saturating_sub(1);
                sizes.heap += crate::eval::json_map_bytes(map.len());
                for (k, item) in map {
                    sizes.text += quoted_len(k) + 1;
                    sizes.heap += k.len() as u64;
                    if !self.json_sizes(item, depth + 1, sizes)? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    fn write(&mut self, v: &Jv<'a>, out: &mut Out, depth: usize) -> R<()> {
        self.meter.step(NODE_STEPS)?;
        if depth > MAX_NESTING {
            return Err(nesting_limit());
        }
        match v.ty() {
            Ty::Null => out.put(self.meter, "null"),
            Ty::Bool => out.put(
                self.meter,
                if v.as_bool().unwrap_or(false) {
                    "true"
                } else {
                    "false"
                },
            ),
            Ty::Num => {
                let s = v.as_number().map(Number::to_string).unwrap_or_default();
                out.put(self.meter, &s)
            }
            Ty::Str => {
                let s = v.as_str().unwrap_or("");
                out.put_quoted(self.meter, s)
            }
            Ty::Expref => out.put(self.meter, "\"<expression>\""),
            Ty::Arr => {
                out.put(self.meter, "[")?;
                if let Some(items) = v.arr_iter() {
                    for (i, item) in items.enumerate() {
                        if i > 0 {
                            out.put(self.meter, ",")?;
                        }
                        self.write(&item, out, depth + 1)?;
                    }
                }
                out.put(self.meter, "]")
            }
            Ty::Obj => {
                out.put(self.meter, "{")?;
                let before = self.meter.live();
                let sorted = self.sorted_entries(v)?;
                let transient = self.meter.live().saturating_sub(before);
                if let Some(entries) = sorted {
                    for (i, (k, item)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.put(self.meter, ",")?;
                        }
                        out.put_quoted(self.meter, k)?;
                        out.put(self.meter, ":")?;
                        self.write(item, out, depth + 1)?;
                    }
                }
                // The sorted entry list is dropped here; the text written stays.
                let now = self.meter.live();
                self.meter.release_to(now.saturating_sub(transient));
                out.put(self.meter, "}")
            }
        }
    }

    fn want(&self, name: &str, pos: usize, v: &Jv<'a>, ok: bool, expected: &str) -> R<()> {
        if ok {
            Ok(())
        } else {
            Err(err(format!(
                "{name}(): argument {} must be {expected}, got {}",
                pos + 1,
                v.ty().name()
            )))
        }
    }

    /// Whether `v` is an array whose elements all have type `ty` (charged
    /// per element).
    fn typed_array(&mut self, v: &Jv<'a>, ty: Ty) -> R<bool> {
        let Some(mut items) = v.arr_iter() else {
            return Ok(false);
        };
        self.meter.step(v.arr_len().unwrap_or(0) as u64)?;
        Ok(items.all(|x| x.ty() == ty))
    }

    fn call(&mut self, name: &str, args: &[Jv<'a>], depth: usize) -> R<Jv<'a>> {
        let arity = |n: usize| -> R<()> {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(format!(
                    "{name}() takes {n} argument(s), got {}",
                    args.len()
                )))
            }
        };
        let null = Jv::Null;
        let arg = |i: usize| args.get(i).unwrap_or(&null);
        match name {
            "abs" | "ceil" | "floor" => {
                arity(1)?;
                let x = arg(0);
                let Some(n) = x.as_f64() else {
                    return Err(err(format!(
                        "{name}(): argument 1 must be number, got {}",
                        x.ty().name()
                    )));
                };
                let r = match name {
                    "abs" => n.abs(),
                    "ceil" => n.ceil(),
                    _ => n.floor(),
                };
                self.number(r, name)
            }
            "avg" | "sum" => {
                arity(1)?;
                let x = arg(0);
                let ok = self.typed_array(x, Ty::Num)?;
                self.want(name, 0, x, ok, "array[number]")?;
                let mut total = 0.0;
                let mut n = 0usize;
                for v in x.arr_iter().into_iter().flatten() {
                    total += v.as_f64().unwrap_or(0.0);
                    n += 1;
                }
                if name == "sum" {
                    self.number(total, name)
                } else if n == 0 {
                    Ok(Jv::Null)
                } else {
                    self.number(total / n as f64, name)
                }
            }
            "contains" => {
                arity(2)?;
                let (hay, needle) = (arg(0), arg(1));
                match hay.ty() {
                    Ty::Arr => {
                        for item in hay.arr_iter().into_iter().flatten() {
                            if self.equal(&item, needle, depth)? {
                                return Ok(Jv::Bool(true));
                            }
                        }
                        Ok(Jv::Bool(false))
                    }
                    Ty::Str => {
                        let s = hay.as_str().unwrap_or("");
                        self.meter.step(1 + s.len() as u64 / BYTES_PER_STEP * 4)?;
                        Ok(Jv::Bool(needle.as_str().is_some_and(|n| s.contains(n))))
                    }
                    _ => Err(err(format!(
                        "contains(): argument 1 must be string or array, got {}",
                        hay.ty().name()
                    ))),
                }
            }
            "starts_with" | "ends_with" => {
                arity(2)?;
                let (Some(s), Some(p)) = (arg(0).as_str(), arg(1).as_str()) else {
                    let bad = if arg(0).as_str().is_none() { 0 } else { 1 };
                    return Err(err(format!(
                        "{name}(): argument {} must be string, got {}",
                        bad + 1,
                        arg(bad).ty().name()
                    )));
                };
                self.meter.step(1 + p.len() as u64 / BYTES_PER_STEP)?;
                Ok(Jv::Bool(if name == "starts_with" {
                    s.starts_with(p)
                } else {
                    s.ends_with(p)
                }))
            }
            "join" => {
                arity(2)?;
                let (glue, list) = (arg(0), arg(1));
                let Some(g) = glue.as_str() else {
                    return Err(err(format!(
                        "join(): argument 1 must be string, got {}",
                        glue.ty().name()
                    )));
                };
                let ok = self.typed_array(list, Ty::Str)?;
                self.want(name, 1, list, ok, "array[string]")?;
                // The length is known before anything is allocated.
                let mut total: u64 = 0;
                for (i, s) in list.arr_iter().into_iter().flatten().enumerate() {
                    let sep = if i > 0 { g.len() as u64 } else { 0 };
                    total = total
                        .saturating_add(sep)
                        .saturating_add(s.as_str().map_or(0, str::len) as u64);
                }
                self.meter.produce(total.saturating_add(RC_BYTES))?;
                let mut joined = String::with_capacity(usize::try_from(total).unwrap_or(0));
                for (i, s) in list.arr_iter().into_iter().flatten().enumerate() {
                    if i > 0 {
                        joined.push_str(g);
                    }
                    joined.push_str(s.as_str().unwrap_or(""));
                }
                self.meter.produce(total)?; // the copy into the Rc
                Ok(Jv::Str(Rc::from(joined)))
            }
            "keys" | "values" => {
                arity(1)?;
                let x = arg(0);
                let Some(entries) = self.sorted_entries(x)? else {
                    return Err(err(format!(
                        "{name}(): argument 1 must be object, got {}",
                        x.ty().name()
                    )));
                };
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    self.slot()?;
                    out.push(if name == "keys" { self.string(k)? } else { v });
                }
                self.array(out)
            }
            "length" => {
                arity(1)?;
                let x = arg(0);
                let n = match x.ty() {
                    Ty::Arr => x.arr_len().unwrap_or(0),
                    Ty::Obj => x.obj_len().unwrap_or(0),
                    Ty::Str => {
                        let s = x.as_str().unwrap_or("");
                        self.meter.step(s.len() as u64 / BYTES_PER_STEP)?;
                        s.chars().count()
                    }
                    _ => {
                        return Err(err(format!(
                            "length(): argument 1 must be array, object or string, got {}",
                            x.ty().name()
                        )));
                    }
                };
                Ok(Jv::Num(Number::from(n)))
            }
            "map" => {
                arity(2)?;
                let Some(ast) = arg(0).as_expref() else {
                    return Err(err(format!(
                        "map(): argument 1 must be expref, got {}",
                        arg(0).ty().name()
                    )));
                };
                let Some(items) = arg(1).arr_iter() else {
                    return Err(err(format!(
                        "map(): argument 2 must be array, got {}",
                        arg(1).ty().name()
                    )));
                };
                let mut out = Vec::new();
                for item in items {
                    let v = self.eval(&item, ast, depth)?;
                    self.slot()?;
                    out.push(v);
                }
                self.array(out)
            }
            "max" | "min" => {
                arity(1)?;
                let x = arg(0);
                let ok = self.typed_array(x, Ty::Num)? || self.typed_array(x, Ty::Str)?;
                self.want(name, 0, x, ok, "array[number] or array[string]")?;
                let mut best: Option<Jv<'a>> = None;
                for item in x.arr_iter().into_iter().flatten() {
                    self.meter
                        .step(1 + item.as_str().map_or(0, str::len) as u64 / BYTES_PER_STEP)?;
                    best = Some(match best {
                        None => item,
                        Some(b) => {
                            let o = order(&item, &b);
                            let take = if name == "max" {
                                o != Ordering::Less
                            } else {
                                o == Ordering::Less
                            };
                            if take { item } else { b }
                        }
                    });
                }
                Ok(best.unwrap_or(Jv::Null))
            }
            "max_by" | "min_by" | "sort_by" => {
                arity(2)?;
                let list = arg(0);
                let Some(items) = list.arr_iter() else {
                    return Err(err(format!(
                        "{name}(): argument 1 must be array, got {}",
                        list.ty().name()
                    )));
                };
                let Some(ast) = arg(1).as_expref() else {
                    return Err(err(format!(
                        "{name}(): argument 2 must be expref, got {}",
                        arg(1).ty().name()
                    )));
                };
                let mut keyed: Vec<(Jv<'a>, Jv<'a>)> = Vec::new();
                let mut key_ty = None;
                let mut longest: u64 = 0;
                for item in items {
                    let k = self.eval(&item, ast, depth)?;
                    let t = k.ty();
                    match key_ty {
                        None if t == Ty::Str || t == Ty::Num => key_ty = Some(t),
                        Some(expected) if t == expected => {}
                        _ => {
                            return Err(err(format!(
                                "{name}(): the expression must return only numbers or only strings, got {}",
                                t.name()
                            )));
                        }
                    }
                    longest = longest.max(k.as_str().map_or(0, str::len) as u64);
                    self.slot()?;
                    self.slot()?;
                    keyed.push((item, k));
                }
                if keyed.is_empty() {
                    return if name == "sort_by" {
                        self.array(Vec::new())
                    } else {
                        Ok(Jv::Null)
                    };
                }
                let n = keyed.len() as u64;
                let cmp_cost = 1 + longest / BYTES_PER_STEP;
                if name == "sort_by" {
                    self.meter.step(
                        n.saturating_mul(1 + u64::from(n.ilog2()))
                            .saturating_mul(cmp_cost),
                    )?;
                    keyed.sort_by(|x, y| order(&x.1, &y.1));
                    let out = keyed.into_iter().map(|(v, _)| v).collect();
                    return self.array(out);
                }
                self.meter.step(n.saturating_mul(cmp_cost))?;
                let mut best: Option<(Jv<'a>, Jv<'a>)> = None;
                for (v, k) in keyed {
                    best = Some(match best {
                        None => (v, k),
                        Some((bv, bk)) => {
                            let o = order(&k, &bk);
                            let take = if name == "max_by" {
                                o == Ordering::Greater
                            } else {
                                o == Ordering::Less
                            };
                            if take { (v, k) } else { (bv, bk) }
                        }
                    });
                }
                Ok(best.map(|(v, _)| v).unwrap_or(Jv::Null))
            }
            "merge" => {
                if args.is_empty() {
                    return Err(err("merge() takes at least 1 argument, got 0"));
                }
                let mut map: BTreeMap<String, Jv<'a>> = BTreeMap::new();
                for (i, a) in args.iter().enumerate() {
                    let Some(entries) = a.obj_iter() else {
                        return Err(err(format!(
                            "merge(): argument {} must be object, got {}",
                            i + 1,
                            a.ty().name()
                        )));
                    };
                    for (k, v) in entries {
                        self.meter.produce(ENTRY_BYTES + k.len() as u64)?;
                        map.insert(k.to_string(), v);
                    }
                }
                self.meter.alloc(RC_BYTES)?;
                Ok(Jv::Obj(Rc::new(map)))
            }
            "not_null" => {
                if args.is_empty() {
                    return Err(err("not_null() takes at least 1 argument, got 0"));
                }
                Ok(args
                    .iter()
                    .find(|a| !a.is_null())
                    .cloned()
                    .unwrap_or(Jv::Null))
            }
            "reverse" => {
                arity(1)?;
                let x = arg(0);
                if let Some(s) = x.as_str() {
                    // Collected into a String, then copied into the Rc.
                    self.meter.produce(2 * s.len() as u64 + RC_BYTES)?;
                    let r: String = s.chars().rev().collect();
                    return Ok(Jv::Str(Rc::from(r)));
                }
                let Some(items) = x.arr_iter() else {
                    return Err(err(format!(
                        "reverse(): argument 1 must be array or string, got {}",
                        x.ty().name()
                    )));
                };
                let n = x.arr_len().unwrap_or(0);
                self.meter.alloc(n as u64 * ELEM_BYTES)?;
                self.meter.step(n as u64)?;
                let mut out: Vec<Jv<'a>> = Vec::with_capacity(n);
                out.extend(items);
                out.reverse();
                self.array(out)
            }
            "sort" => {
                arity(1)?;
                let x = arg(0);
                let ok = self.typed_array(x, Ty::Num)? || self.typed_array(x, Ty::Str)?;
                self.want(name, 0, x, ok, "array[number] or array[string]")?;
                let n = x.arr_len().unwrap_or(0);
                let mut longest: u64 = 0;
                let mut out: Vec<Jv<'a>> = Vec::new();
                self.meter.alloc(n as u64 * ELEM_BYTES)?;
                out.reserve_exact(n);
                for item in x.arr_iter().into_iter().flatten() {
                    longest = longest.max(item.as_str().map_or(0, str::len) as u64);
                    out.push(item);
                }
                let n = n.max(1) as u64;
                self.meter.step(
                    n.saturating_mul(1 + u64::from(n.ilog2()))
                        .saturating_mul(1 + longest / BYTES_PER_STEP),
                )?;
                out.sort_by(order);
                self.array(out)
            }
            "to_array" => {
                arity(1)?;
                let x = arg(0);
                if x.ty() == Ty::Arr {
                    Ok(x.clone())
                } else {
                    self.slot()?;
                    self.array(vec![x.clone()])
                }
            }
            "to_number" => {
                arity(1)?;
                let x = arg(0);
                Ok(match x.ty() {
                    Ty::Num => x.clone(),
                    Ty::Str => {
                        let s = x.as_str().unwrap_or("");
                        self.meter.step(1 + s.len() as u64 / BYTES_PER_STEP)?;
                        s.trim().parse::<Number>().map(Jv::Num).unwrap_or(Jv::Null)
                    }
                    _ => Jv::Null,
                })
            }
            "to_string" => {
                arity(1)?;
                let x = arg(0);
                match x.ty() {
                    Ty::Str => Ok(x.clone()),
                    Ty::Expref => Err(err("to_string(): argument 1 must not be expref")),
                    _ => {
                        let text = self.serialize(x)?;
                        self.string(&text)
                    }
                }
            }
            "type" => {
                arity(1)?;
                self.string(arg(0).ty().name())
            }
            // MAA extension used by the documented TPM policies: false unless
            // both arguments are strings; compares without allocating.
            "equals_ignore_case" => {
                let eq = match (
                    args.first().and_then(Jv::as_str),
                    args.get(1).and_then(Jv::as_str),
                ) {
                    (Some(a), Some(b)) => {
                        self.meter.step(1 + (a.len() + b.len()) as u64 / 8)?;
                        a.chars()
                            .flat_map(char::to_lowercase)
                            .eq(b.chars().flat_map(char::to_lowercase))
                    }
                    _ => false,
                };
                Ok(Jv::Bool(eq))
            }
            other => Err(err(format!("unknown function {other}()"))),
        }
    }
}

/// `jmespath` 0.5's index: negative counts from the end; out of range is null.
fn index<'a>(data: &Jv<'a>, idx: i32) -> Option<Jv<'a>> {
    let len = data.arr_len()?;
    let i = if idx >= 0 {
        usize::try_from(idx).ok()?
    } else {
        let back = usize::try_from(i64::from(idx).unsigned_abs()).ok()?;
        len.checked_sub(back)?
    };
    data.arr_get(i)
}

/// The output string. Growth is charged before it happens, at the real
/// capacity, so the text never exceeds the budget.
struct Out {
    buf: String,
}

impl Out {
    fn reserve(&mut self, meter: &mut Meter<'_>, more: usize) -> R<()> {
        let need = self.buf.len().saturating_add(more);
        if need > self.buf.capacity() {
            let new_cap = need.max(self.buf.capacity().saturating_mul(2)).max(64);
            let grow = (new_cap - self.buf.capacity()) as u64;
            meter.alloc(grow)?;
            self.buf.reserve_exact(new_cap - self.buf.len());
        }
        meter.step(2 + more as u64 / BYTES_PER_STEP)
    }

    fn put(&mut self, meter: &mut Meter<'_>, s: &str) -> R<()> {
        self.reserve(meter, s.len())?;
        match s.as_bytes() {
            // Punctuation: a one-byte `str` is ASCII, pushed without a copy call.
            [b] => self.buf.push(char::from(*b)),
            _ => self.buf.push_str(s),
        }
        Ok(())
    }

    /// A JSON string literal, escaped exactly as `serde_json` does: its
    /// length is known first ([`quoted_len`]), reserved (and charged) at once.
    fn put_quoted(&mut self, meter: &mut Meter<'_>, s: &str) -> R<()> {
        self.reserve(meter, usize::try_from(quoted_len(s)).unwrap_or(usize::MAX))?;
        push_quoted(&mut self.buf, s);
        Ok(())
    }
}

/// Appends `s` as a JSON string literal, escaped exactly as `serde_json`
/// escapes it (the one escaping routine of this module).
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // Most strings need no escape: one branch-free pass (vectorized)
    // decides, and the whole string is copied at once.
    let plain = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0C => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or(""));
        if esc.is_empty() {
            // Only control characters get here: b < 0x20.
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            for nibble in [b >> 4, b & 0xF] {
                let digit = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                out.push(char::from(digit));
            }
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

/// The JSON text of a [`crate::JsonString`]'s value: every object's keys in
/// sorted order (the order `JmesPath` output has; the value keeps input
/// objects in their own order), numbers and strings as `serde_json` writes
/// them. `hint` is the text's known length. Recursion is bounded by the
/// value's depth, at most [`MAX_STRUCTURED_DEPTH`].
pub(crate) fn json_string_text(v: &Value, hint: usize) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(n) => {
                // Writing to a String cannot fail.
                let _ = std::fmt::Write::write_fmt(out, format_args!("{n}"));
            }
            Value::String(s) => push_quoted(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|x, y| x.0.cmp(y.0));
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_quoted(out, k);
                    out.push(':');
                    write(item, out);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::with_capacity(hint);
    write(v, &mut out);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::{Budget, Claim, ClaimValue, Policy};
    use serde_json::json;

    thread_local! {
        /// Off: `JmesPath` results are all text (as before `JsonString`).
        pub(super) static STRUCTURED_RESULTS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    }

    /// Windows-like boot events the MAA TPM samples query.
    fn events() -> Value {
        let mut events = vec![
            json!({"PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
                   "ProcessedData": {"VariableGuid": "8BE4DF61-93CA-11D2-AA0D-00E098032B8C",
                                     "UnicodeName": "SecureBoot", "VariableData": "AQ"}}),
            json!({"PcrIndex": 7, "EventTypeString": "EV_EFI_VARIABLE_DRIVER_CONFIG",
                   "ProcessedData": {"VariableGuid": "8BE4DF61-93CA-11D2-AA0D-00E098032B8C",
                                     "UnicodeName": "PK", "VariableData": "oVkSmn0JbUyh".repeat(20)}}),
            json!({"PcrIndex": 4, "EventTypeString": "EV_EFI_BOOT_SERVICES_APPLICATION",
                   "ProcessedData": {"DevicePath": "AgEMANBBAwoAAAAAAQEGAAAD"}}),
        ];
        for i in 0..12 {
            let pcr = [12, 13, 19, 20][i % 4];
            events.push(json!({"PcrIndex": pcr, "EventTypeString": "EV_EVENT_TAG",
                "ProcessedData": {"EVENT_TRUSTBOUNDARY": {
                    "EVENT_BOOTDEBUGGING": false, "EVENT_CODEINTEGRITY": true,
                    "EVENT_VBS_HVCI_POLICY": [{"String": "HypervisorEnforcedCodeIntegrityEnable", "Value": 1}],
                    "EVENT_LOADEDMODULE_AGGREGATION": [
                        {"EVENT_FILEPATH": format!("\\Windows\\System32\\drivers\\drv{i}.sys"),
                         "EVENT_IMAGEVALIDATED": true, "EVENT_AUTHORITYISSUER": "Microsoft Windows Production PCA 2011"},
                        {"EVENT_FILEPATH": "\\windows\\system32\\drivers\\malicious.sys", "EVENT_IMAGEVALIDATED": i == 5},
                    ]}}}));
        }
        events.push(json!({"PcrIndex": 10, "EventTypeString": "IMA_MEASUREMENT_EVENT",
            "ProcessedData": {"Keyring": ".builtin_trusted_keys", "CertificateSubject": "Debian Secure Boot Signer"}}));
        json!({ "Events": events })
    }

    /// Every vector policy decides, issues and traces exactly the same
    /// (or fails with the same error) whether `JmesPath` results are kept
    /// structured or their texts parsed, on structured and on text events.
    #[test]
    fn every_vector_policy_evaluates_the_same_with_and_without_kept_results() {
        let test = "every_vector_policy_evaluates_the_same_with_and_without_kept_results";
        let dir = aver_testkit::vectors_dir().join("maa/policies");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            aver_testkit::skip(test, "maa/policies missing");
            return;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        let claim_sets = [
            vec![
                Claim::service("x-ms-attestation-type", ClaimValue::String("tpm".into())),
                Claim::service("events", ClaimValue::Json(events())),
            ],
            vec![Claim::service(
                "events",
                ClaimValue::String(events().to_string()),
            )],
        ];
        let mut compared = 0;
        let mut permitted_with_results = 0;
        for path in names {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(policy) = Policy::parse(&text) else {
                continue;
            };
            for claims in &claim_sets {
                STRUCTURED_RESULTS.with(|k| k.set(true));
                let kept = policy.evaluate(claims);
                STRUCTURED_RESULTS.with(|k| k.set(false));
                let parsed = policy.evaluate(claims);
                STRUCTURED_RESULTS.with(|k| k.set(true));
                match (kept, parsed) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a.decision, b.decision, "{path:?}");
                        assert_eq!(a.deny_reason, b.deny_reason, "{path:?}");
                        assert_eq!(a.issued, b.issued, "{path:?}");
                        assert_eq!(a.properties, b.properties, "{path:?}");
                        assert_eq!(a.trace, b.trace, "{path:?}");
                        if !a.issued.is_empty() && policy.compiled_jmespath_queries() > 1 {
                            permitted_with_results += 1;
                        }
                    }
                    (Err(a), Err(b)) => {
                        assert_eq!(
                            (a.section, a.rule, &a.kind),
                            (b.section, b.rule, &b.kind),
                            "{path:?}"
                        );
                    }
                    (a, b) => panic!("{path:?}: kept {a:?}, parsed {b:?}"),
                }
                compared += 1;
            }
        }
        assert!(compared >= 60, "{compared}");
        assert!(permitted_with_results >= 4, "{permitted_with_results}");
    }

    /// Input objects with unsorted keys at every level, strings needing
    /// escapes, numbers of every kind.
    fn data() -> Value {
        json!({
            "z": {"y": 1, "b": [{"q": "x", "a": -2}, {"m": 1.5, "c": "é\"\\\n\u{1}"}], "a": null},
            "a": [3, 1.0, -0.0, 12345678901234567890u64, -9223372036854775808i64, 1e300],
            "Events": [
                {"PcrIndex": 7, "EventTypeString": "V", "ProcessedData": {"Z": "SecureBoot", "A": "AQ"}},
                {"PcrIndex": 12, "EventTypeString": "T", "ProcessedData": {"T": {"b": false, "a": [true]}}},
            ],
            "empty": {}, "arr": [],
        })
    }

    const QUERIES: &[&str] = &[
        "@",
        "z",
        "z.b",
        "a",
        "Events[?PcrIndex == `7`]",
        "Events[*].ProcessedData",
        "Events[].[PcrIndex, EventTypeString]",
        "{zz: z, aa: a, e: empty}",
        "[`{\"b\": 1, \"a\": [2, {\"d\": 3, \"c\": 4}]}`, 'lit', `1.25`]",
        "map(&PcrIndex, Events)",
        "[&PcrIndex]",
        "values(z)",
        "merge(z, `{\"a\": 5}`)",
        "sort_by(Events, &PcrIndex)",
        "empty",
        "arr",
        "Events[?PcrIndex == `99`]",
    ];

    /// A structured result is exactly what parsing its text gives: the
    /// same value, with the same key order (so writing it gives the text),
    /// and the text length and heap size it is charged are exact (the heap
    /// as `json_heap_bytes` counts a copy of a JSON value).
    #[test]
    fn a_structured_result_is_what_parsing_its_text_gives() {
        let data = data();
        let budget = Budget::default();
        for q in QUERIES {
            let ast = parse_query(q).unwrap();
            let mut meter = Meter::new(&budget);
            let mut it = Interp { meter: &mut meter };
            let result = it.eval(&Jv::Json(&data), &ast, 0).unwrap();
            let text = it.serialize(&result).unwrap();
            let mut sizes = Sizes::new(u64::MAX);
            let kept = it.own(&result, 0, &mut sizes).unwrap().unwrap();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            // Equal as JSON values (object order aside) …
            assert_eq!(kept, parsed, "{q}");
            // … and written, the very text.
            assert_eq!(json_string_text(&kept, 0), text, "{q}");
            assert_eq!(sizes.text, text.len() as u64, "{q}");
            let mut meter = Meter::new(&budget);
            let heap = crate::eval::json_heap_bytes_for_test(&parsed, &mut meter);
            assert_eq!(sizes.heap, heap, "{q}");
        }
    }

    /// The text lengths charged for numbers and compared strings are exact.
    #[test]
    fn number_lengths_and_short_string_equality_are_exact() {
        for n in [
            json!(0),
            json!(9),
            json!(10),
            json!(99),
            json!(100),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!(-10),
            json!(1.5),
            json!(-0.0),
            json!(1e300),
            json!(12345678901234567890u64),
        ] {
            let Value::Number(n) = &n else { panic!() };
            assert_eq!(number_len(n), n.to_string().len() as u64, "{n}");
        }
        let words = [
            "",
            "a",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_str(a, b), a == b, "{a:?} {b:?}");
                let mut c = a.to_string();
                if let Some(last) = c.pop() {
                    c.push(if last == 'z' { 'y' } else { 'z' });
                    assert!(!same_str(a, &c), "{a:?} {c:?}");
                    assert!(!same_str(&c, a), "{c:?} {a:?}");
                }
                let mut d = a.to_string();
                if !d.is_empty() {
                    d.replace_range(0..1, "Z");
                    assert_eq!(same_str(a, &d), a == d, "{a:?} {d:?}");
                }
            }
        }
    }

    /// A result deeper than `MAX_STRUCTURED_DEPTH` is returned as text.
    #[test]
    fn a_result_too_deep_to_keep_is_text() {
        let mut deep = json!(1);
        for _ in 0..=MAX_STRUCTURED_DEPTH {
            deep = json!([deep]);
        }
        let budget = Budget::default();
        let mut meter = Meter::new(&budget);
        let data = ClaimValue::Json(json!({"d": deep}));
        let out = search(&data, false, "d", None, &mut meter).unwrap();
        let ClaimValue::String(text) = out else {
            panic!("{out:?}")
        };
        assert_eq!(text, serde_json::to_string(&deep).unwrap());
        let shallow = search(&data, false, "d[0]", None, &mut meter).unwrap();
        assert!(matches!(shallow, ClaimValue::JsonString(_)), "{shallow:?}");
    }
}
