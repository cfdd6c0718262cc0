//! Policy evaluation: claim sets, condition matching, actions and the 1.2
//! functions, all under a [`Budget`].
//!
//! Budget accounting (see `budget.rs`): every allocation is charged to the
//! [`Meter`] before it is made, every loop charges its iterations before it
//! runs them. Memory is counted as *held*: what a rule builds for itself
//! (bindings, value sets, function results) is released when the rule ends,
//! what it leaves behind (claims, trace entry) stays charged until the end.

use std::borrow::Cow;

use serde_json::Value;
use smallvec::{SmallVec, smallvec};

use crate::ast::*;
use crate::budget::{BYTES_PER_STEP, Budget, COMPARE_BYTES_PER_STEP, Meter, size_of};
use crate::jmes;
use crate::{
    Claim, ClaimValue, Decision, EvalError, EvalErrorKind, Evaluation, ISSUER_POLICY, Policy,
    TraceEntry,
};

/// Default most claims one evaluation may hold ([`Budget::max_claims`]).
pub const MAX_CLAIMS: usize = Budget::DEFAULT_MAX_CLAIMS;
/// Most values one expression may evaluate to (sets, element-wise products).
pub const MAX_VALUE_SET: usize = 10_000;
/// Longest accepted JMESPath query, in bytes.
pub const MAX_JMESPATH_QUERY_BYTES: usize = 16 * 1024;
/// Most structural JMESPath operators (`. | [ ( { ! & @ *` and comparisons)
/// in one query; bounds the nesting of the parsed query, and so the recursion
/// depth of the `jmespath` crate's parser and of the interpreter.
pub const MAX_JMESPATH_OPERATORS: usize = 256;

/// Deepest JSON the evaluator walks (to size or compare it). JSON parsed by
/// `serde_json` is at most 128 levels deep; this only guards the stack
/// against a caller-built `ClaimValue::Json`.
const MAX_JSON_DEPTH: usize = 512;

// Vectors that grow by pushing hold up to twice their length in capacity,
// so the per-element charges below are doubled.

/// Bytes charged per element of a value set (the slot itself; owned
/// payloads are charged on top).
const VALUE_BYTES: u64 = 2 * size_of::<Cow<'static, ClaimValue>>();
/// Bytes charged per claim held, on top of its strings and value payload.
const CLAIM_BYTES: u64 = 2 * size_of::<Claim>();
/// Bytes charged per trace entry (plus its claims): the entry and its
/// action name.
const TRACE_ENTRY_BYTES: u64 = 2 * size_of::<TraceEntry>() + 16;
/// Bytes charged per claim added to the incoming set (an index into the
/// trace, and its entry in the type index).
const ADDED_BYTES: u64 = 2 * size_of::<(usize, usize)>() + TYPE_INDEX_BYTES;
/// Bytes charged per claim in the type index ([`TypeIndex`]): its slot in a
/// growing list and, at most, a table entry of its own (key, list, control
/// byte) in a table up to twice as large as its entries.
const TYPE_INDEX_BYTES: u64 = 2 * size_of::<usize>() + 2 * (size_of::<(u64, Vec<usize>)>() + 1);
/// Bytes charged per bound claim (an index into the incoming set).
const HIT_BYTES: u64 = 2 * size_of::<usize>();
/// Heap bytes per entry of a JSON object (`serde_json` with
/// `preserve_order`: an `IndexMap` entry holds the hash, key and value).
const JSON_ENTRY_BYTES: u64 = 8 + size_of::<String>() + size_of::<Value>();

/// Heap bytes of an `IndexMap` with `n` entries as `clone()` allocates it:
/// a hash index of a power-of-two number of buckets (at least 4, at most
/// 7/8 full; an 8-byte slot and a control byte each, plus a 16-byte control
/// group) and an entry vector with the index's capacity.
pub(crate) fn json_map_bytes(n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let buckets = match n {
        0..4 => 4,
        4..8 => 8,
        _ => (n.saturating_mul(8) / 7 + 1).next_power_of_two(),
    } as u64;
    let capacity = if buckets < 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    };
    capacity * JSON_ENTRY_BYTES + buckets * 9 + 16
}

type EResult<T> = Result<T, EvalErrorKind>;
/// An expression's value set: values of incoming claims are borrowed. Most
/// sets hold one value (a literal, a function's result): held inline.
type Vals<'s> = SmallVec<[Cow<'s, ClaimValue>; 1]>;

struct State<'i> {
    /// The caller's incoming claims, borrowed (never copied).
    base: &'i [Claim],
    /// Incoming claims (base and added) by type.
    types: TypeIndex,
    /// Claims rules added to the incoming set: `(trace entry, produced claim)`.
    /// Every added claim is also in the trace, so it is stored once.
    added: Vec<(usize, usize)>,
    issued: Vec<Claim>,
    properties: Vec<Claim>,
    trace: Vec<TraceEntry>,
}

/// The incoming claims' indices (ascending) by a key of their type, so that
/// a condition testing `type == "…"` looks only at claims that may have
/// that type instead of at every claim: most rules of real policies test
/// one type, and TPM evidence brings dozens of claims. Keys may collide
/// (two types, one key): the condition still compares every candidate's
/// type, so a collision costs a comparison, never a wrong match.
///
/// The caller's claims are one sorted list, built at once; claims rules
/// add (a few in real policies) go to a table by key.
struct TypeIndex {
    /// `(key, index)` of the caller's claims, sorted.
    base: Vec<(u64, usize)>,
    added: std::collections::HashMap<u64, Vec<usize>, KeyHasher>,
}

impl TypeIndex {
    fn new(claims: &[Claim]) -> TypeIndex {
        let mut base: Vec<(u64, usize)> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| (type_key(&c.claim_type), i))
            .collect();
        base.sort_unstable();
        TypeIndex {
            base,
            added: Default::default(),
        }
    }

    /// Records claim `index`, added by a rule (indices grow).
    fn add(&mut self, claim_type: &str, index: usize) {
        self.added
            .entry(type_key(claim_type))
            .or_default()
            .push(index);
    }

    /// Ascending indices of the claims that may have type `t`.
    fn candidates(&self, t: &str) -> impl Iterator<Item = usize> + '_ {
        let key = type_key(t);
        let from = self.base.partition_point(|&(k, _)| k < key);
        let to = self.base.partition_point(|&(k, _)| k <= key);
        let base = self.base.get(from..to).unwrap_or_default();
        let added = self.added.get(&key).map_or(&[][..], Vec::as_slice);
        base.iter().map(|&(_, i)| i).chain(added.iter().copied())
    }
}

/// A constant-time key of a claim type: its length and its first and last
/// eight bytes (claim types differ in length or at their ends).
fn type_key(t: &str) -> u64 {
    let b = t.as_bytes();
    let word = |s: &[u8]| s.iter().take(8).fold(0u64, |w, &x| w << 8 | u64::from(x));
    let head = word(b);
    let tail = word(b.get(b.len().saturating_sub(8)..).unwrap_or_default());
    (b.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ head ^ tail.rotate_left(29)
}

/// Hashes a [`type_key`] by one multiplication (it is already a mix of
/// the type's bytes; the table needs its high bits spread).
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl State<'_> {
    fn incoming_len(&self) -> usize {
        self.base.len() + self.added.len()
    }

    /// Incoming claim `i` (evidence claims first, then added ones in order).
    fn get(&self, i: usize) -> Option<&Claim> {
        match self.base.get(i) {
            Some(c) => Some(c),
            None => {
                let &(t, p) = self.added.get(i.checked_sub(self.base.len())?)?;
                self.trace.get(t)?.produced.get(p)
            }
        }
    }
}

enum Outcome {
    Continue,
    Denied(String),
}

pub fn evaluate(
    policy: &Policy,
    incoming: &[Claim],
    budget: &Budget,
) -> Result<Evaluation, EvalError> {
    let mut meter = Meter::new(budget);
    meter.jmes.queries = std::sync::Arc::clone(&policy.queries);
    // Before any rule: an expired deadline, a set flag, too many claims;
    // then the type index of the incoming claims (one step and its bytes each).
    if let Err(kind) = meter
        .check_interrupts()
        .and_then(|()| meter.add_claims(incoming.len()))
        .and_then(|()| meter.step(incoming.len() as u64))
        .and_then(|()| meter.alloc(incoming.len() as u64 * TYPE_INDEX_BYTES))
    {
        return Err(EvalError {
            section: None,
            rule: 0,
            line: 0,
            column: 0,
            kind,
            usage: meter.usage(),
        });
    }
    let types = TypeIndex::new(incoming);
    let mut st = State {
        base: incoming,
        types,
        added: Vec::new(),
        issued: Vec::new(),
        properties: Vec::new(),
        trace: Vec::new(),
    };
    let mut permitted = false;
    let sections: [(Section, Option<&Vec<Rule>>); 3] = [
        (Section::Configuration, policy.configuration.as_ref()),
        (Section::Authorization, Some(&policy.authorization)),
        (Section::Issuance, policy.issuance.as_ref()),
    ];
    for (section, rules) in sections {
        if section == Section::Issuance && !permitted {
            return Ok(finish(
                st,
                &meter,
                Decision::Deny,
                Some("no permit() was issued by authorizationrules".into()),
            ));
        }
        let Some(rules) = rules else { continue };
        for (i, rule) in rules.iter().enumerate() {
            match run_rule(&mut st, &mut meter, section, i + 1, rule, &mut permitted) {
                Ok(Outcome::Continue) => {}
                Ok(Outcome::Denied(reason)) => {
                    return Ok(finish(st, &meter, Decision::Deny, Some(reason)));
                }
                Err(kind) => {
                    return Err(EvalError {
                        section: Some(section),
                        rule: i + 1,
                        line: rule.span.line,
                        column: rule.span.column,
                        kind,
                        usage: meter.usage(),
                    });
                }
            }
        }
    }
    Ok(finish(st, &meter, Decision::Permit, None))
}

fn finish(
    st: State<'_>,
    meter: &Meter<'_>,
    decision: Decision,
    deny_reason: Option<String>,
) -> Evaluation {
    let issued = if decision == Decision::Permit {
        st.issued
    } else {
        Vec::new()
    };
    Evaluation {
        decision,
        deny_reason,
        issued,
        properties: st.properties,
        trace: st.trace,
        usage: meter.usage(),
    }
}

/// Claims bound to identifiers: indices into the incoming set.
type Env<'r> = Vec<(&'r str, Vec<usize>)>;

fn run_rule(
    st: &mut State<'_>,
    meter: &mut Meter<'_>,
    section: Section,
    index: usize,
    rule: &Rule,
    permitted: &mut bool,
) -> EResult<Outcome> {
    // Everything this rule builds for itself is released when it ends; what
    // it keeps (its trace entry, the claims it produces) is added to `mark`.
    let mark = meter.live();
    meter.step(1)?;
    meter.alloc(TRACE_ENTRY_BYTES)?;
    let mut keep = TRACE_ENTRY_BYTES;
    // Claims added by this rule's own action are not visible to its conditions.
    let snapshot = st.incoming_len();
    let mut env: Env<'_> = Vec::new();
    let mut matched = true;
    for cond in &rule.conditions {
        meter.step(1)?;
        let mut rhs_sets: SmallVec<[Vals<'_>; 2]> = SmallVec::with_capacity(cond.props.len());
        let mut costs: SmallVec<[u64; 2]> = SmallVec::with_capacity(cond.props.len());
        meter.alloc(cond.props.len() as u64 * 2 * size_of::<Vals<'static>>())?;
        for p in &cond.props {
            let set = eval_expr(&p.rhs, &env, st, meter)?;
            costs.push(compare_cost(&set, meter)?);
            rhs_sets.push(set);
        }
        let mut hits: Vec<usize> = Vec::new();
        let (mut typed, mut every);
        let scan: &mut dyn Iterator<Item = usize> = match typed_candidates(cond, &rhs_sets, st) {
            Some(candidates) => {
                meter.step(1)?;
                typed = candidates.take_while(|&i| i < snapshot);
                &mut typed
            }
            None => {
                every = 0..snapshot;
                &mut every
            }
        };
        for i in scan {
            let Some(c) = st.get(i) else { break };
            let mut all = true;
            for ((p, rhs), cost) in cond.props.iter().zip(&rhs_sets).zip(&costs) {
                // One comparison per value of the right-hand side.
                meter.step(*cost)?;
                if !prop_matches(c, p.prop, p.op, rhs) {
                    all = false;
                    break;
                }
            }
            if all {
                if cond.negated {
                    // One hit is enough to know a negated condition is false.
                    hits.push(i);
                    break;
                }
                meter.alloc(HIT_BYTES)?;
                hits.push(i);
            }
        }
        let ok = if cond.negated {
            hits.is_empty()
        } else {
            !hits.is_empty()
        };
        if !ok {
            matched = false;
            break;
        }
        if let Some(b) = &cond.binding {
            env.push((b.as_str(), hits));
        }
    }
    let mut entry = TraceEntry {
        section,
        rule: index,
        line: rule.span.line,
        matched,
        action: None,
        produced: Vec::new(),
    };
    if !matched {
        st.trace.push(entry);
        meter.release_to(mark + keep);
        return Ok(Outcome::Continue);
    }
    entry.action = Some(rule.action.name());
    let outcome = match &rule.action {
        Action::Permit => {
            *permitted = true;
            Outcome::Continue
        }
        Action::Deny => {
            let reason = format!(
                "rule {index} of {} (line {}) issued deny()",
                section.keyword(),
                rule.span.line
            );
            meter.alloc(reason.len() as u64)?;
            keep += reason.len() as u64;
            Outcome::Denied(reason)
        }
        Action::Add(spec) | Action::Issue(spec) | Action::IssueProperty(spec) => {
            let (claims, bytes, copied) = make_claims(spec, &env, st, meter)?;
            let n = claims.len();
            // Where the claims go. `claim=c` re-emits claims already in the
            // incoming set: issue/issueproperty do not duplicate them there
            // (add does). issue() in authorizationrules only reaches the
            // incoming set ("no claims can be issued from authorizationrules
            // to the token").
            let to_incoming = match &rule.action {
                Action::Add(_) => true,
                _ => !copied,
            };
            let to_issued =
                matches!(&rule.action, Action::Issue(_)) && section != Section::Authorization;
            let to_properties = matches!(&rule.action, Action::IssueProperty(_));
            // Charge before copying: the produced claims move to the trace;
            // the issued/property sets get a copy; the incoming set an index.
            let mut held = 0;
            if to_incoming {
                held += n;
                meter.alloc(n as u64 * ADDED_BYTES)?;
                keep += n as u64 * ADDED_BYTES;
            }
            if to_issued || to_properties {
                held += n;
                meter.produce(bytes)?;
                keep += bytes;
            }
            meter.add_claims(held)?;
            keep += bytes;
            if to_issued {
                st.issued.extend(claims.iter().cloned());
            }
            if to_properties {
                st.properties.extend(claims.iter().cloned());
            }
            if to_incoming {
                let t = st.trace.len();
                for (p, c) in claims.iter().enumerate() {
                    st.types.add(&c.claim_type, st.incoming_len());
                    st.added.push((t, p));
                }
            }
            entry.produced = claims;
            Outcome::Continue
        }
    };
    st.trace.push(entry);
    meter.release_to(mark + keep);
    Ok(outcome)
}

/// When a condition tests `type == v` for a single value `v`, the only
/// claims it can match: those the type index holds under `v`'s key (none
/// when `v` is not a String).
fn typed_candidates<'s>(
    cond: &Condition,
    rhs_sets: &[Vals<'_>],
    st: &'s State<'_>,
) -> Option<impl Iterator<Item = usize> + 's> {
    cond.props
        .iter()
        .zip(rhs_sets)
        .find_map(|(p, rhs)| match (p.prop, p.op, rhs.as_slice()) {
            (Prop::Type, Op::Eq, [only]) => Some(
                // A value that is not a String matches no claim type.
                only.as_ref()
                    .as_text()
                    .map(|t| st.types.candidates(t))
                    .into_iter()
                    .flatten(),
            ),
            _ => None,
        })
}

/// Steps to compare one claim property against every value of `rhs`: one
/// per value, plus the length of long strings and the size of JSON values
/// (equality of those is linear in their size).
fn compare_cost(rhs: &Vals<'_>, meter: &mut Meter<'_>) -> EResult<u64> {
    let mut cost: u64 = 1;
    for v in rhs {
        let extra = match v.as_ref() {
            ClaimValue::String(s) => s.len() as u64 / COMPARE_BYTES_PER_STEP,
            // Compared by its text, which a comparison may first write.
            ClaimValue::JsonString(j) => j.text_len() as u64 / BYTES_PER_STEP,
            ClaimValue::Json(j) => json_heap_bytes(j, meter, 0)? / COMPARE_BYTES_PER_STEP,
            _ => 0,
        };
        cost = cost.saturating_add(1 + extra);
    }
    Ok(cost)
}

/// Heap bytes of a JSON value's contents (what cloning it allocates):
/// array slots, object entries with their hash-index share, string and key
/// text. The value's own inline size is its container's. Charges one step
/// per node walked.
fn json_heap_bytes(v: &Value, meter: &mut Meter<'_>, depth: usize) -> EResult<u64> {
    meter.step(1)?;
    if depth > MAX_JSON_DEPTH {
        return Err(EvalErrorKind::Limit(format!(
            "JSON value nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let mut total: u64 = 0;
    match v {
        Value::String(s) => total = s.len() as u64,
        Value::Array(items) => {
            total = items.len() as u64 * size_of::<Value>();
            for i in items {
                total = total.saturating_add(json_heap_bytes(i, meter, depth + 1)?);
            }
        }
        Value::Object(map) => {
            total = json_map_bytes(map.len());
            for (k, i) in map {
                total = total
                    .saturating_add(k.len() as u64)
                    .saturating_add(json_heap_bytes(i, meter, depth + 1)?);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(total)
}

#[cfg(test)]
pub(crate) fn json_heap_bytes_for_test(v: &Value, meter: &mut Meter<'_>) -> u64 {
    json_heap_bytes(v, meter, 0).unwrap_or(u64::MAX)
}

/// Heap bytes of a claim value beyond its inline size.
fn value_heap_bytes(v: &ClaimValue, meter: &mut Meter<'_>) -> EResult<u64> {
    match v {
        ClaimValue::Bool(_) | ClaimValue::Integer(_) => Ok(0),
        ClaimValue::String(s) => Ok(s.capacity() as u64),
        ClaimValue::JsonString(j) => Ok(j.heap_bytes()),
        ClaimValue::Json(j) => json_heap_bytes(j, meter, 0),
    }
}

fn claim_bytes(c: &Claim, meter: &mut Meter<'_>) -> EResult<u64> {
    Ok(CLAIM_BYTES
        + c.claim_type.len() as u64
        + c.issuer.len() as u64
        + value_heap_bytes(&c.value, meter)?)
}

fn prop_matches(c: &Claim, prop: Prop, op: Op, rhs: &[Cow<'_, ClaimValue>]) -> bool {
    let lhs: &ClaimValue = match prop {
        Prop::Value => &c.value,
        Prop::Type => return string_cmp(&c.claim_type, op, rhs),
        Prop::Issuer => return string_cmp(&c.issuer, op, rhs),
        Prop::ValueType => return string_cmp(c.value.value_type(), op, rhs),
    };
    match op {
        Op::Eq => rhs.iter().any(|r| r.as_ref() == lhs),
        Op::Ne => !rhs.iter().any(|r| r.as_ref() == lhs),
        _ => rhs.iter().any(|r| match (lhs, r.as_ref()) {
            (ClaimValue::Integer(a), ClaimValue::Integer(b)) => match op {
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                _ => a >= b,
            },
            _ => false,
        }),
    }
}

/// `type`, `issuer` and `valueType` are strings: `==`/`!=` compare them to
/// the String values of the set; ordering operators never match them (the
/// parser only allows ordering on `value`).
fn string_cmp(s: &str, op: Op, rhs: &[Cow<'_, ClaimValue>]) -> bool {
    let any = rhs.iter().any(|r| r.as_ref().as_text() == Some(s));
    match op {
        Op::Eq => any,
        Op::Ne => !any,
        _ => false,
    }
}

fn lookup<'e>(env: &'e Env<'_>, ident: &str) -> EResult<&'e [usize]> {
    env.iter()
        .find(|(n, _)| *n == ident)
        .map(|(_, v)| v.as_slice())
        .ok_or_else(|| EvalErrorKind::Type(format!("identifier '{ident}' is not bound")))
}

/// A String value about to be created: charged (slot, bytes, copy work).
fn new_string<'s>(s: &str, meter: &mut Meter<'_>) -> EResult<Cow<'s, ClaimValue>> {
    meter.produce(VALUE_BYTES + s.len() as u64)?;
    Ok(Cow::Owned(ClaimValue::String(s.to_string())))
}

/// A scalar value about to be created: charged (slot, one step).
fn new_scalar<'s>(v: ClaimValue, meter: &mut Meter<'_>) -> EResult<Cow<'s, ClaimValue>> {
    meter.alloc(VALUE_BYTES)?;
    meter.step(1)?;
    Ok(Cow::Owned(v))
}

/// Evaluates an expression to a value set. Literals are singletons; `c.value`
/// is the values of every claim bound to `c` (borrowed, not copied); scalar
/// functions apply element-wise (cartesian product for two arguments).
fn eval_expr<'s>(
    e: &'s Expr,
    env: &Env<'_>,
    st: &'s State<'_>,
    meter: &mut Meter<'_>,
) -> EResult<Vals<'s>> {
    match &e.kind {
        // Lent, like a claim's value: the policy outlives the evaluation.
        ExprKind::Str(s) => {
            meter.alloc(VALUE_BYTES)?;
            meter.step(1)?;
            Ok(smallvec![Cow::Borrowed(s.value())])
        }
        ExprKind::Int(i) => Ok(smallvec![new_scalar(ClaimValue::Integer(*i), meter)?]),
        ExprKind::Bool(b) => Ok(smallvec![new_scalar(ClaimValue::Bool(*b), meter)?]),
        ExprKind::Ref { ident, prop } => {
            let idx = lookup(env, ident)?;
            meter.alloc(idx.len() as u64 * VALUE_BYTES)?;
            meter.step(idx.len() as u64)?;
            let mut out = Vals::with_capacity(idx.len());
            for c in idx.iter().filter_map(|&i| st.get(i)) {
                out.push(match prop {
                    // Borrowed values are claims' and the policy's
                    // literals, which live unchanged until the evaluation
                    // ends (the JSON text cache, `jmes::Caches`, keys on
                    // their address).
                    Prop::Value => Cow::Borrowed(&c.value),
                    Prop::Type => new_string(&c.claim_type, meter)?,
                    Prop::Issuer => new_string(&c.issuer, meter)?,
                    Prop::ValueType => new_string(c.value.value_type(), meter)?,
                });
            }
            Ok(out)
        }
        ExprKind::Call { func, args } => {
            let mut vals: SmallVec<[Vals<'s>; 2]> = SmallVec::with_capacity(args.len());
            for a in args {
                vals.push(eval_expr(a, env, st, meter)?);
            }
            call(*func, &vals, meter)
        }
    }
}

pub(crate) fn fn_err_named(function: &str, msg: impl Into<String>) -> EvalErrorKind {
    EvalErrorKind::Function {
        function: function.to_string(),
        message: msg.into(),
    }
}

fn fn_err(func: Func, msg: impl Into<String>) -> EvalErrorKind {
    fn_err_named(func.name(), msg)
}

fn call<'s>(func: Func, args: &[Vals<'s>], meter: &mut Meter<'_>) -> EResult<Vals<'s>> {
    let arg = |i: usize| -> EResult<&Vals<'s>> {
        args.get(i).ok_or_else(|| fn_err(func, "missing argument"))
    };
    match func {
        Func::IsSubsetOf => {
            let (a, b) = (arg(0)?, arg(1)?);
            let per_element = compare_cost(b, meter)?;
            let mut subset = true;
            for x in a {
                meter.step(per_element)?;
                if !b.contains(x) {
                    subset = false;
                    break;
                }
            }
            Ok(smallvec![new_scalar(ClaimValue::Bool(subset), meter)?])
        }
        Func::ContainsOnlyValue => {
            let (set, v) = (arg(0)?, arg(1)?);
            let per_value = compare_cost(set, meter)?;
            let mut out = Vals::with_capacity(v.len());
            for v in v {
                meter.step(per_value)?;
                let only = !set.is_empty() && set.iter().all(|x| x == v);
                out.push(new_scalar(ClaimValue::Bool(only), meter)?);
            }
            Ok(out)
        }
        Func::NegateBool => {
            let mut out = Vals::new();
            for v in arg(0)? {
                match v.as_ref() {
                    ClaimValue::Bool(b) => out.push(new_scalar(ClaimValue::Bool(!b), meter)?),
                    other => {
                        return Err(fn_err(
                            func,
                            format!("expects a Boolean, got {}", other.value_type()),
                        ));
                    }
                }
            }
            Ok(out)
        }
        Func::JsonToClaimValue => {
            let mut out = Vals::new();
            for v in arg(0)? {
                json_to_claim_value(v, &mut out, meter)?;
                if out.len() > MAX_VALUE_SET {
                    return Err(EvalErrorKind::Limit(format!(
                        "JsonToClaimValue produced more than {MAX_VALUE_SET} values"
                    )));
                }
            }
            Ok(out)
        }
        Func::AppendString | Func::JmesPath => {
            let (a, b) = (arg(0)?, arg(1)?);
            let n = a.len().saturating_mul(b.len());
            if n > MAX_VALUE_SET {
                return Err(EvalErrorKind::Limit(format!(
                    "{} applied to {}x{} values exceeds {MAX_VALUE_SET}",
                    func.name(),
                    a.len(),
                    b.len()
                )));
            }
            meter.alloc(n as u64 * VALUE_BYTES)?;
            let mut out = Vals::with_capacity(n);
            for x in a {
                for y in b {
                    out.push(Cow::Owned(if func == Func::AppendString {
                        append_string(x, y, meter)?
                    } else {
                        // A borrowed value is a claim's or a literal's
                        // (see `jmes::Caches`).
                        jmes_path(x, matches!(x, Cow::Borrowed(_)), y, meter)?
                    }));
                }
            }
            Ok(out)
        }
    }
}

fn append_string(a: &ClaimValue, b: &ClaimValue, meter: &mut Meter<'_>) -> EResult<ClaimValue> {
    match (a.as_text(), b.as_text()) {
        (Some(x), Some(y)) => {
            // The length is known first: charged before anything is allocated.
            let len = x.len().saturating_add(y.len());
            meter.produce(len as u64)?;
            let mut s = String::with_capacity(len);
            s.push_str(x);
            s.push_str(y);
            Ok(ClaimValue::String(s))
        }
        _ => Err(fn_err(
            Func::AppendString,
            format!(
                "expects two Strings, got {} and {}",
                a.value_type(),
                b.value_type()
            ),
        )),
    }
}

/// `JsonToClaimValue`: JSON number (integral) → Integer, bool → Boolean,
/// string → String, array of those → several values (null elements skipped),
/// null → no value; objects, nested arrays and fractions are errors.
fn json_to_claim_value<'s>(
    v: &ClaimValue,
    out: &mut Vals<'s>,
    meter: &mut Meter<'_>,
) -> EResult<()> {
    let f = Func::JsonToClaimValue;
    let mark = meter.live();
    let parsed;
    let json: &Value = match v {
        ClaimValue::String(s) => {
            parsed = jmes::parse_json_text(s, meter)?
                .map_err(|e| fn_err(f, format!("argument is not valid JSON text: {e}")))?;
            &parsed
        }
        // A `JmesPath` result: its structure, not its text, is read.
        ClaimValue::JsonString(j) => j.value(),
        ClaimValue::Json(j) => j,
        ClaimValue::Bool(_) | ClaimValue::Integer(_) => {
            out.push(new_scalar(v.clone(), meter)?);
            return Ok(());
        }
    };
    // The parsed text is dropped when this returns; the values produced stay.
    let mut produced: u64 = 0;
    let mut push = |item: &Value, out: &mut Vals<'s>, meter: &mut Meter<'_>| -> EResult<()> {
        if out.len() >= MAX_VALUE_SET {
            return Err(EvalErrorKind::Limit(format!(
                "JsonToClaimValue produced more than {MAX_VALUE_SET} values"
            )));
        }
        let cv = json_scalar(item)?;
        let bytes = VALUE_BYTES + value_heap_bytes(&cv, meter)?;
        meter.produce(bytes)?;
        produced += bytes;
        out.push(Cow::Owned(cv));
        Ok(())
    };
    match json {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(_) | Value::Object(_) => {
                        return Err(fn_err(
                            f,
                            "arrays may only contain numbers, strings and Booleans",
                        ));
                    }
                    Value::Null => meter.step(1)?,
                    scalar => push(scalar, out, meter)?,
                }
            }
        }
        Value::Object(_) => return Err(fn_err(f, "a JSON object cannot become a claim value")),
        Value::Null => {}
        scalar => push(scalar, out, meter)?,
    }
    meter.release_to(mark + produced);
    Ok(())
}

fn json_scalar(v: &Value) -> EResult<ClaimValue> {
    let f = Func::JsonToClaimValue;
    match v {
        Value::Bool(b) => Ok(ClaimValue::Bool(*b)),
        Value::String(s) => Ok(ClaimValue::String(s.clone())),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(ClaimValue::Integer(i))
            } else if n.is_u64() {
                Err(fn_err(
                    f,
                    format!("integer {n} does not fit in 64 signed bits"),
                ))
            } else {
                Err(fn_err(f, format!("number {n} is not an integer")))
            }
        }
        _ => Err(fn_err(f, "not a scalar")),
    }
}

/// Rough structural complexity of a JMESPath query, ignoring literals:
/// every operator that can add a level to the parsed query.
fn jmespath_operators(q: &str) -> usize {
    let mut n = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut prev = ' ';
    for c in q.chars() {
        if let Some(qc) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == qc {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            '.' | '|' | '[' | '(' | '{' | '!' | '&' | '@' | '*' => n += 1,
            // Comparisons chain (`a < b < c` nests to the left); `==`, `!=`,
            // `<=`, `>=` count once.
            '<' | '>' => n += 1,
            '=' if !matches!(prev, '=' | '!' | '<' | '>') => n += 1,
            _ => {}
        }
        prev = c;
    }
    n
}

/// `JmesPath(json, query)`: the result is the JSON text of the query result
/// (a String claim value; a string result is therefore JSON-quoted).
fn jmes_path(
    data: &ClaimValue,
    claim: bool,
    query: &ClaimValue,
    meter: &mut Meter<'_>,
) -> EResult<ClaimValue> {
    let f = Func::JmesPath;
    let Some(q) = query.as_text() else {
        return Err(fn_err(
            f,
            format!("the query must be a String, got {}", query.value_type()),
        ));
    };
    if q.is_empty() {
        return Err(fn_err(f, "the query is empty"));
    }
    if q.len() > MAX_JMESPATH_QUERY_BYTES {
        return Err(EvalErrorKind::Limit(format!(
            "JmesPath query exceeds {MAX_JMESPATH_QUERY_BYTES} bytes or {MAX_JMESPATH_OPERATORS} operators"
        )));
    }
    meter.step(1 + q.len() as u64 / BYTES_PER_STEP)?;
    // A query the policy compiled passed the operator check then.
    let compiled = meter.jmes.queries.get(q);
    if compiled.is_none() && jmespath_operators(q) > MAX_JMESPATH_OPERATORS {
        return Err(EvalErrorKind::Limit(format!(
            "JmesPath query exceeds {MAX_JMESPATH_QUERY_BYTES} bytes or {MAX_JMESPATH_OPERATORS} operators"
        )));
    }
    jmes::search(data, claim, q, compiled, meter)
}

/// Whether a query passes the checks [`jmes_path`] makes before parsing it
/// (not empty, at most [`MAX_JMESPATH_QUERY_BYTES`] bytes and
/// [`MAX_JMESPATH_OPERATORS`] operators): only such queries are compiled
/// with the policy.
pub(crate) fn query_acceptable(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= MAX_JMESPATH_QUERY_BYTES
        && jmespath_operators(q) <= MAX_JMESPATH_OPERATORS
}

fn single_string(set: Vals<'_>, what: &str) -> EResult<Option<String>> {
    match set.as_slice() {
        [] => Ok(None),
        [v] => match v.as_ref() {
            ClaimValue::String(s) => Ok(Some(s.clone())),
            ClaimValue::JsonString(j) => Ok(Some(j.as_str().to_owned())),
            other => Err(EvalErrorKind::Type(format!(
                "{what} must be a String, got {}",
                other.value_type()
            ))),
        },
        many => Err(EvalErrorKind::Type(format!(
            "{what} must be a single value, got {}",
            many.len()
        ))),
    }
}

/// Counts the bytes `serde_json` writes, charging the work and failing as
/// soon as they no longer fit in the budget (so sizing a huge value stops
/// early, before anything is allocated).
struct CountingWriter<'m, 'b> {
    written: u64,
    meter: &'m mut Meter<'b>,
    error: Option<EvalErrorKind>,
}

impl std::io::Write for CountingWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written = self.written.saturating_add(buf.len() as u64);
        let charged = if self.written > self.meter.room() {
            // Fails: the standard "value bytes" error for this size.
            self.meter.alloc(self.written)
        } else {
            self.meter.step(1 + buf.len() as u64 / BYTES_PER_STEP)
        };
        match charged {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                self.error = Some(e);
                Err(std::io::Error::other("policy evaluation budget exhausted"))
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON text of `j`: sized first (without allocating), charged, then
/// written into a buffer of exactly that size.
fn json_to_text(j: &Value, meter: &mut Meter<'_>) -> EResult<String> {
    let mut w = CountingWriter {
        written: 0,
        meter,
        error: None,
    };
    let sized = serde_json::to_writer(&mut w, j);
    let (len, error) = (w.written, w.error);
    if let Some(e) = error {
        return Err(e);
    }
    let too_large = || EvalErrorKind::Limit("the JSON value cannot be serialized".into());
    sized.map_err(|_| too_large())?;
    meter.produce(len)?;
    let mut buf = Vec::with_capacity(usize::try_from(len).map_err(|_| too_large())?);
    serde_json::to_writer(&mut buf, j).map_err(|_| too_large())?;
    String::from_utf8(buf).map_err(|_| too_large())
}

fn convert_value_type(v: ClaimValue, vt: &str, meter: &mut Meter<'_>) -> EResult<ClaimValue> {
    let bad = |v: &ClaimValue| {
        EvalErrorKind::Type(format!(
            "value of type {} cannot be converted to valueType {vt}",
            v.value_type()
        ))
    };
    match vt.to_ascii_lowercase().as_str() {
        // Already a String (its text is charged already).
        "string" if matches!(v, ClaimValue::JsonString(_)) => Ok(v),
        "string" => Ok(ClaimValue::String(match v {
            ClaimValue::String(s) => s,
            ClaimValue::JsonString(j) => j.as_str().to_owned(),
            ClaimValue::Integer(i) => i.to_string(),
            ClaimValue::Bool(b) => b.to_string(),
            ClaimValue::Json(j) => json_to_text(&j, meter)?,
        })),
        "integer" => match &v {
            ClaimValue::Integer(_) => Ok(v),
            ClaimValue::String(_) | ClaimValue::JsonString(_) => v
                .as_text()
                .unwrap_or("")
                .trim()
                .parse::<i64>()
                .map(ClaimValue::Integer)
                .map_err(|_| bad(&v)),
            _ => Err(bad(&v)),
        },
        "boolean" => match &v {
            ClaimValue::Bool(_) => Ok(v),
            _ if v.as_text().is_some_and(|s| s.eq_ignore_ascii_case("true")) => {
                Ok(ClaimValue::Bool(true))
            }
            _ if v.as_text().is_some_and(|s| s.eq_ignore_ascii_case("false")) => {
                Ok(ClaimValue::Bool(false))
            }
            _ => Err(bad(&v)),
        },
        _ => Err(EvalErrorKind::Type(format!(
            "valueType must be String, Integer or Boolean, got '{vt}'"
        ))),
    }
}

/// Builds the claims of an add/issue/issueproperty action, charging each
/// copy before it is made. Returns the claims, the bytes they hold, and
/// whether they are copies of bound claims (`claim=c`).
fn make_claims(
    spec: &ClaimSpec,
    env: &Env<'_>,
    st: &State<'_>,
    meter: &mut Meter<'_>,
) -> EResult<(Vec<Claim>, u64, bool)> {
    match spec {
        ClaimSpec::Copy { ident, .. } => {
            let idx = lookup(env, ident)?;
            let mut out = Vec::with_capacity(idx.len());
            let mut total = 0;
            for c in idx.iter().filter_map(|&i| st.get(i)) {
                let bytes = claim_bytes(c, meter)?;
                meter.produce(bytes)?;
                total += bytes;
                out.push(c.clone());
            }
            Ok((out, total, true))
        }
        ClaimSpec::Fields {
            claim_type,
            value,
            value_type,
            issuer,
        } => {
            let types = eval_expr(claim_type, env, st, meter)?;
            let values = eval_expr(value, env, st, meter)?;
            let vt = match value_type {
                Some(e) => single_string(eval_expr(e, env, st, meter)?, "valueType")?,
                None => None,
            };
            let iss = match issuer {
                Some(e) => single_string(eval_expr(e, env, st, meter)?, "issuer")?,
                None => None,
            }
            .unwrap_or_else(|| ISSUER_POLICY.to_string());
            if types.len().saturating_mul(values.len()) > MAX_VALUE_SET {
                return Err(EvalErrorKind::Limit(format!(
                    "action would create more than {MAX_VALUE_SET} claims"
                )));
            }
            // Each value's payload size, computed once (JSON values are walked).
            let mut sizes = Vec::with_capacity(values.len());
            for v in &values {
                sizes.push(value_heap_bytes(v, meter)?);
            }
            let mut out = Vec::with_capacity(types.len() * values.len());
            let mut total = 0;
            // With one type each value makes one claim: an owned value (a
            // function's result) moves into it instead of being copied.
            let single = types.len() == 1;
            let mut values = values;
            for t in &types {
                let Some(t) = t.as_ref().as_text() else {
                    return Err(EvalErrorKind::Type(format!(
                        "claim type must be a String, got {}",
                        t.value_type()
                    )));
                };
                for (v, size) in values.iter_mut().zip(&sizes) {
                    let bytes = CLAIM_BYTES + t.len() as u64 + iss.len() as u64 + size;
                    meter.produce(bytes)?;
                    let v = if single {
                        std::mem::replace(v, Cow::Owned(ClaimValue::Bool(false))).into_owned()
                    } else {
                        v.as_ref().clone()
                    };
                    total += bytes;
                    let v = match &vt {
                        Some(vt) => {
                            // A conversion to String may serialize JSON (charged
                            // inside); the result is never JSON, so sizing it is O(1).
                            let converted = convert_value_type(v, vt, meter)?;
                            total += value_heap_bytes(&converted, meter)?;
                            converted
                        }
                        None => v,
                    };
                    out.push(Claim {
                        claim_type: t.to_owned(),
                        value: v,
                        issuer: iss.clone(),
                    });
                }
            }
            Ok((out, total, false))
        }
    }
}
