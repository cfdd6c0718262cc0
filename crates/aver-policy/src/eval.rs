//! Policy evaluation: claim sets, condition matching, actions and the 1.2 functions.

use std::sync::OnceLock;

use serde_json::Value;

use crate::ast::*;
use crate::{
    Claim, ClaimValue, Decision, EvalError, EvalErrorKind, Evaluation, ISSUER_POLICY, Policy,
    TraceEntry,
};

/// Most claims the incoming set may hold during one evaluation.
pub const MAX_CLAIMS: usize = 100_000;
/// Most values one expression may evaluate to (sets, element-wise products).
pub const MAX_VALUE_SET: usize = 10_000;
/// Longest accepted JMESPath query, in bytes.
pub const MAX_JMESPATH_QUERY_BYTES: usize = 16 * 1024;
/// Most structural JMESPath operators (`. | [ ( { ! & `) in one query; bounds
/// the recursion depth of the `jmespath` crate's parser and interpreter.
pub const MAX_JMESPATH_OPERATORS: usize = 256;

type EResult<T> = Result<T, EvalErrorKind>;

struct State<'p> {
    incoming: Vec<Claim>,
    issued: Vec<Claim>,
    properties: Vec<Claim>,
    trace: Vec<TraceEntry>,
    _policy: &'p Policy,
}

enum Outcome {
    Continue,
    Denied(String),
}

pub fn evaluate(policy: &Policy, incoming: &[Claim]) -> Result<Evaluation, EvalError> {
    if incoming.len() > MAX_CLAIMS {
        return Err(EvalError {
            section: None,
            rule: 0,
            line: 0,
            column: 0,
            kind: EvalErrorKind::Limit(format!(
                "{} incoming claims exceed the limit of {MAX_CLAIMS}",
                incoming.len()
            )),
        });
    }
    let mut st = State {
        incoming: incoming.to_vec(),
        issued: Vec::new(),
        properties: Vec::new(),
        trace: Vec::new(),
        _policy: policy,
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
                Decision::Deny,
                Some("no permit() was issued by authorizationrules".into()),
            ));
        }
        let Some(rules) = rules else { continue };
        for (i, rule) in rules.iter().enumerate() {
            match run_rule(&mut st, section, i + 1, rule, &mut permitted) {
                Ok(Outcome::Continue) => {}
                Ok(Outcome::Denied(reason)) => return Ok(finish(st, Decision::Deny, Some(reason))),
                Err(kind) => {
                    return Err(EvalError {
                        section: Some(section),
                        rule: i + 1,
                        line: rule.span.line,
                        column: rule.span.column,
                        kind,
                    });
                }
            }
        }
    }
    Ok(finish(st, Decision::Permit, None))
}

fn finish(st: State<'_>, decision: Decision, deny_reason: Option<String>) -> Evaluation {
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
    }
}

/// Claims bound to identifiers: indices into the incoming set.
type Env<'r> = Vec<(&'r str, Vec<usize>)>;

fn run_rule(
    st: &mut State<'_>,
    section: Section,
    index: usize,
    rule: &Rule,
    permitted: &mut bool,
) -> EResult<Outcome> {
    // Claims added by this rule's own action are not visible to its conditions.
    let snapshot = st.incoming.len();
    let mut env: Env<'_> = Vec::new();
    let mut matched = true;
    for cond in &rule.conditions {
        let mut rhs_sets = Vec::with_capacity(cond.props.len());
        for p in &cond.props {
            rhs_sets.push(eval_expr(&p.rhs, &env, &st.incoming)?);
        }
        let hits: Vec<usize> = st.incoming[..snapshot]
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                cond.props
                    .iter()
                    .zip(&rhs_sets)
                    .all(|(p, rhs)| prop_matches(c, p.prop, p.op, rhs))
            })
            .map(|(i, _)| i)
            .collect();
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
        return Ok(Outcome::Continue);
    }
    entry.action = Some(rule.action.name().to_string());
    let outcome = match &rule.action {
        Action::Permit => {
            *permitted = true;
            Outcome::Continue
        }
        Action::Deny => Outcome::Denied(format!(
            "rule {index} of {} (line {}) issued deny()",
            section.keyword(),
            rule.span.line
        )),
        Action::Add(spec) => {
            let (claims, _) = make_claims(spec, &env, &st.incoming)?;
            push_limited(&mut st.incoming, &claims)?;
            entry.produced = claims;
            Outcome::Continue
        }
        Action::Issue(spec) | Action::IssueProperty(spec) => {
            let (claims, copied) = make_claims(spec, &env, &st.incoming)?;
            // `claim=c` re-emits claims already in the incoming set: not duplicated there.
            if !copied {
                push_limited(&mut st.incoming, &claims)?;
            }
            // issue() in authorizationrules only reaches the incoming set
            // ("no claims can be issued from authorizationrules to the token").
            match (&rule.action, section) {
                (Action::Issue(_), Section::Authorization) => {}
                (Action::Issue(_), _) => st.issued.extend(claims.iter().cloned()),
                _ => st.properties.extend(claims.iter().cloned()),
            }
            entry.produced = claims;
            Outcome::Continue
        }
    };
    st.trace.push(entry);
    Ok(outcome)
}

fn push_limited(set: &mut Vec<Claim>, claims: &[Claim]) -> EResult<()> {
    if set.len() + claims.len() > MAX_CLAIMS {
        return Err(EvalErrorKind::Limit(format!(
            "the incoming claim set would exceed {MAX_CLAIMS} claims"
        )));
    }
    set.extend(claims.iter().cloned());
    Ok(())
}

fn prop_value(c: &Claim, prop: Prop) -> ClaimValue {
    match prop {
        Prop::Type => ClaimValue::String(c.claim_type.clone()),
        Prop::Value => c.value.clone(),
        Prop::Issuer => ClaimValue::String(c.issuer.clone()),
        Prop::ValueType => ClaimValue::String(c.value.value_type().to_string()),
    }
}

fn prop_matches(c: &Claim, prop: Prop, op: Op, rhs: &[ClaimValue]) -> bool {
    // Avoid cloning large values for the common `value` comparisons.
    let owned;
    let lhs: &ClaimValue = match prop {
        Prop::Value => &c.value,
        Prop::Type if op == Op::Eq || op == Op::Ne => {
            return string_cmp(&c.claim_type, op, rhs);
        }
        Prop::Issuer if op == Op::Eq || op == Op::Ne => {
            return string_cmp(&c.issuer, op, rhs);
        }
        _ => {
            owned = prop_value(c, prop);
            &owned
        }
    };
    match op {
        Op::Eq => rhs.iter().any(|r| r == lhs),
        Op::Ne => !rhs.iter().any(|r| r == lhs),
        _ => rhs.iter().any(|r| match (lhs, r) {
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

fn string_cmp(s: &str, op: Op, rhs: &[ClaimValue]) -> bool {
    let any = rhs
        .iter()
        .any(|r| matches!(r, ClaimValue::String(x) if x == s));
    if op == Op::Eq { any } else { !any }
}

fn lookup<'e>(env: &'e Env<'_>, ident: &str) -> EResult<&'e [usize]> {
    env.iter()
        .find(|(n, _)| *n == ident)
        .map(|(_, v)| v.as_slice())
        .ok_or_else(|| EvalErrorKind::Type(format!("identifier '{ident}' is not bound")))
}

/// Evaluates an expression to a value set. Literals are singletons; `c.value`
/// is the values of every claim bound to `c`; scalar functions apply
/// element-wise (cartesian product for two arguments).
fn eval_expr(e: &Expr, env: &Env<'_>, incoming: &[Claim]) -> EResult<Vec<ClaimValue>> {
    match &e.kind {
        ExprKind::Str(s) => Ok(vec![ClaimValue::String(s.clone())]),
        ExprKind::Int(i) => Ok(vec![ClaimValue::Integer(*i)]),
        ExprKind::Bool(b) => Ok(vec![ClaimValue::Bool(*b)]),
        ExprKind::Ref { ident, prop } => {
            let idx = lookup(env, ident)?;
            Ok(idx
                .iter()
                .filter_map(|&i| incoming.get(i))
                .map(|c| prop_value(c, *prop))
                .collect())
        }
        ExprKind::Call { func, args } => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval_expr(a, env, incoming)?);
            }
            call(*func, &vals)
        }
    }
}

fn fn_err(func: Func, msg: impl Into<String>) -> EvalErrorKind {
    EvalErrorKind::Function {
        function: func.name().to_string(),
        message: msg.into(),
    }
}

fn call(func: Func, args: &[Vec<ClaimValue>]) -> EResult<Vec<ClaimValue>> {
    let arg = |i: usize| -> EResult<&Vec<ClaimValue>> {
        args.get(i).ok_or_else(|| fn_err(func, "missing argument"))
    };
    match func {
        Func::IsSubsetOf => {
            let (a, b) = (arg(0)?, arg(1)?);
            Ok(vec![ClaimValue::Bool(a.iter().all(|x| b.contains(x)))])
        }
        Func::ContainsOnlyValue => {
            let (set, v) = (arg(0)?, arg(1)?);
            Ok(v.iter()
                .map(|v| ClaimValue::Bool(!set.is_empty() && set.iter().all(|x| x == v)))
                .collect())
        }
        Func::NegateBool => arg(0)?
            .iter()
            .map(|v| match v {
                ClaimValue::Bool(b) => Ok(ClaimValue::Bool(!b)),
                other => Err(fn_err(
                    func,
                    format!("expects a Boolean, got {}", other.value_type()),
                )),
            })
            .collect(),
        Func::JsonToClaimValue => {
            let mut out = Vec::new();
            for v in arg(0)? {
                json_to_claim_value(v, &mut out)?;
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
            if a.len().saturating_mul(b.len()) > MAX_VALUE_SET {
                return Err(EvalErrorKind::Limit(format!(
                    "{} applied to {}x{} values exceeds {MAX_VALUE_SET}",
                    func.name(),
                    a.len(),
                    b.len()
                )));
            }
            let mut out = Vec::with_capacity(a.len() * b.len());
            for x in a {
                for y in b {
                    out.push(if func == Func::AppendString {
                        append_string(x, y)?
                    } else {
                        jmes_path(x, y)?
                    });
                }
            }
            Ok(out)
        }
    }
}

fn append_string(a: &ClaimValue, b: &ClaimValue) -> EResult<ClaimValue> {
    match (a, b) {
        (ClaimValue::String(x), ClaimValue::String(y)) => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(ClaimValue::String(s))
        }
        (x, y) => Err(fn_err(
            Func::AppendString,
            format!(
                "expects two Strings, got {} and {}",
                x.value_type(),
                y.value_type()
            ),
        )),
    }
}

/// `JsonToClaimValue`: JSON number (integral) → Integer, bool → Boolean,
/// string → String, array of those → several values (null elements skipped),
/// null → no value; objects, nested arrays and fractions are errors.
fn json_to_claim_value(v: &ClaimValue, out: &mut Vec<ClaimValue>) -> EResult<()> {
    let f = Func::JsonToClaimValue;
    let parsed;
    let json: &Value = match v {
        ClaimValue::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| fn_err(f, format!("argument is not valid JSON text: {e}")))?;
            &parsed
        }
        ClaimValue::Json(j) => j,
        ClaimValue::Bool(_) | ClaimValue::Integer(_) => {
            out.push(v.clone());
            return Ok(());
        }
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
                    Value::Null => {}
                    scalar => out.push(json_scalar(scalar)?),
                }
            }
            Ok(())
        }
        Value::Object(_) => Err(fn_err(f, "a JSON object cannot become a claim value")),
        Value::Null => Ok(()),
        scalar => {
            out.push(json_scalar(scalar)?);
            Ok(())
        }
    }
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

fn jmespath_runtime() -> &'static jmespath::Runtime {
    static RUNTIME: OnceLock<jmespath::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut rt = jmespath::Runtime::new();
        rt.register_builtin_functions();
        // MAA extension used by the documented TPM policies.
        rt.register_function(
            "equals_ignore_case",
            Box::new(
                |args: &[jmespath::Rcvar], _ctx: &mut jmespath::Context<'_>| {
                    let eq = match (args.first().map(|a| &**a), args.get(1).map(|a| &**a)) {
                        (
                            Some(jmespath::Variable::String(a)),
                            Some(jmespath::Variable::String(b)),
                        ) => a.to_lowercase() == b.to_lowercase(),
                        _ => false,
                    };
                    Ok(jmespath::Rcvar::new(jmespath::Variable::Bool(eq)))
                },
            ),
        );
        rt
    })
}

/// Rough structural complexity of a JMESPath query, ignoring literals.
fn jmespath_operators(q: &str) -> usize {
    let mut n = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
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
            _ => {}
        }
    }
    n
}

/// `JmesPath(json, query)`: the result is the JSON text of the query result
/// (a String claim value; a string result is therefore JSON-quoted).
fn jmes_path(data: &ClaimValue, query: &ClaimValue) -> EResult<ClaimValue> {
    let f = Func::JmesPath;
    let ClaimValue::String(q) = query else {
        return Err(fn_err(
            f,
            format!("the query must be a String, got {}", query.value_type()),
        ));
    };
    if q.is_empty() {
        return Err(fn_err(f, "the query is empty"));
    }
    if q.len() > MAX_JMESPATH_QUERY_BYTES || jmespath_operators(q) > MAX_JMESPATH_OPERATORS {
        return Err(EvalErrorKind::Limit(format!(
            "JmesPath query exceeds {MAX_JMESPATH_QUERY_BYTES} bytes or {MAX_JMESPATH_OPERATORS} operators"
        )));
    }
    let parsed;
    let json: &Value = match data {
        ClaimValue::String(s) => {
            if s.is_empty() {
                return Err(fn_err(f, "the JSON argument is empty"));
            }
            parsed = serde_json::from_str::<Value>(s).map_err(|e| {
                fn_err(f, format!("the first argument is not valid JSON text: {e}"))
            })?;
            &parsed
        }
        ClaimValue::Json(j) => j,
        ClaimValue::Integer(i) => {
            parsed = Value::from(*i);
            &parsed
        }
        ClaimValue::Bool(b) => {
            parsed = Value::Bool(*b);
            &parsed
        }
    };
    let rt = jmespath_runtime();
    let run = || -> Result<String, String> {
        let expr = rt.compile(q).map_err(|e| e.to_string())?;
        let result = expr.search(json).map_err(|e| e.to_string())?;
        serde_json::to_string(&*result).map_err(|e| e.to_string())
    };
    // Defence in depth: a panic inside the third-party JMESPath engine becomes an error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(text)) => Ok(ClaimValue::String(text)),
        Ok(Err(msg)) => Err(EvalErrorKind::JmesPath(msg)),
        Err(_) => Err(EvalErrorKind::JmesPath("the JMESPath engine failed".into())),
    }
}

fn single_string(set: Vec<ClaimValue>, what: &str) -> EResult<Option<String>> {
    match set.as_slice() {
        [] => Ok(None),
        [ClaimValue::String(s)] => Ok(Some(s.clone())),
        [other] => Err(EvalErrorKind::Type(format!(
            "{what} must be a String, got {}",
            other.value_type()
        ))),
        many => Err(EvalErrorKind::Type(format!(
            "{what} must be a single value, got {}",
            many.len()
        ))),
    }
}

fn convert_value_type(v: ClaimValue, vt: &str) -> EResult<ClaimValue> {
    let bad = |v: &ClaimValue| {
        EvalErrorKind::Type(format!(
            "value of type {} cannot be converted to valueType {vt}",
            v.value_type()
        ))
    };
    match vt.to_ascii_lowercase().as_str() {
        "string" => Ok(ClaimValue::String(match v {
            ClaimValue::String(s) => s,
            ClaimValue::Integer(i) => i.to_string(),
            ClaimValue::Bool(b) => b.to_string(),
            ClaimValue::Json(j) => j.to_string(),
        })),
        "integer" => match &v {
            ClaimValue::Integer(_) => Ok(v),
            ClaimValue::String(s) => s
                .trim()
                .parse::<i64>()
                .map(ClaimValue::Integer)
                .map_err(|_| bad(&v)),
            _ => Err(bad(&v)),
        },
        "boolean" => match &v {
            ClaimValue::Bool(_) => Ok(v),
            ClaimValue::String(s) if s.eq_ignore_ascii_case("true") => Ok(ClaimValue::Bool(true)),
            ClaimValue::String(s) if s.eq_ignore_ascii_case("false") => Ok(ClaimValue::Bool(false)),
            _ => Err(bad(&v)),
        },
        _ => Err(EvalErrorKind::Type(format!(
            "valueType must be String, Integer or Boolean, got '{vt}'"
        ))),
    }
}

/// Builds the claims of an add/issue/issueproperty action. Returns whether
/// they are copies of bound claims (`claim=c`).
fn make_claims(spec: &ClaimSpec, env: &Env<'_>, incoming: &[Claim]) -> EResult<(Vec<Claim>, bool)> {
    match spec {
        ClaimSpec::Copy { ident, .. } => {
            let idx = lookup(env, ident)?;
            Ok((
                idx.iter()
                    .filter_map(|&i| incoming.get(i))
                    .cloned()
                    .collect(),
                true,
            ))
        }
        ClaimSpec::Fields {
            claim_type,
            value,
            value_type,
            issuer,
        } => {
            let types = eval_expr(claim_type, env, incoming)?;
            let values = eval_expr(value, env, incoming)?;
            let vt = match value_type {
                Some(e) => single_string(eval_expr(e, env, incoming)?, "valueType")?,
                None => None,
            };
            let iss = match issuer {
                Some(e) => single_string(eval_expr(e, env, incoming)?, "issuer")?,
                None => None,
            }
            .unwrap_or_else(|| ISSUER_POLICY.to_string());
            if types.len().saturating_mul(values.len()) > MAX_VALUE_SET {
                return Err(EvalErrorKind::Limit(format!(
                    "action would create more than {MAX_VALUE_SET} claims"
                )));
            }
            let mut out = Vec::new();
            for t in &types {
                let ClaimValue::String(t) = t else {
                    return Err(EvalErrorKind::Type(format!(
                        "claim type must be a String, got {}",
                        t.value_type()
                    )));
                };
                for v in &values {
                    let v = match &vt {
                        Some(vt) => convert_value_type(v.clone(), vt)?,
                        None => v.clone(),
                    };
                    out.push(Claim {
                        claim_type: t.clone(),
                        value: v,
                        issuer: iss.clone(),
                    });
                }
            }
            Ok((out, false))
        }
    }
}
