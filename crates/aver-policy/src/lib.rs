//! # aver-policy — the MAA claim-rule policy language
//!
//! Parser, evaluator and policy hash for the attestation policy language of
//! Microsoft Azure Attestation (MAA), versions 1.0, 1.1 and 1.2. Pure: no I/O.
//! The grammar is not published by Microsoft; this implementation follows the
//! documented examples (all 41 reference policies are covered by tests).
//!
//! ## Language
//!
//! ```text
//! policy     := "version" "=" INT "." INT ";"             -- 1.0 | 1.1 | 1.2, any whitespace
//!               ("configurationrules" body)?               -- version 1.1 and later
//!               "authorizationrules" body
//!               ("issuancerules" body)?
//! body       := "{" rule* "}" ";"
//! rule       := (condition ("&&" condition)*)? "=>" action ";"
//! condition  := "!"? (IDENT ":")? "[" prop op expr ("," prop op expr)* "]"   -- "!" only in 1.2
//! prop       := "type" | "value" | "issuer" | "valueType"
//! op         := "==" | "!=" | "<" | "<=" | ">" | ">="      -- "=" is read as "==" (D1)
//! action     := "permit" "(" ")" | "deny" "(" ")"
//!             | ("add" | "issue" | "issueproperty") "(" claimspec ")"
//! claimspec  := field ("," field)*                          -- type= and value= required, any order
//!             | "claim" "=" IDENT
//! field      := ("type" | "value" | "valueType" | "issuer") "=" expr
//! expr       := STRING | INT | "true" | "false" | IDENT "." prop | FUNC "(" args ")"   -- FUNC only in 1.2
//! FUNC       := JmesPath | JsonToClaimValue | IsSubsetOf | AppendString | NegateBool | ContainsOnlyValue
//! ```
//! Strings are ASCII-`"`-delimited on one line, with escapes `\"` `\\` `\/` `\n` `\r` `\t`.
//! Integers are decimal (optionally negative) or `0x` hexadecimal, 64-bit.
//! Comments: `//` to end of line and `/* … */`, in every version. Keywords,
//! property names, `true`/`false` and function names are case-sensitive.
//! Parse errors carry the 1-based line and column (columns count characters).
//!
//! Static checks done by the parser: `configurationrules` needs 1.1+, `!` and
//! functions need 1.2; `permit`/`deny` only in `authorizationrules`,
//! `issueproperty` not in `authorizationrules`, `issue` not in
//! `configurationrules`; identifiers must be bound by an *earlier* condition
//! of the same rule and bound only once; a negated condition cannot bind;
//! ordering operators only on `value` and never with a string/bool literal;
//! function names and arities are checked.
//!
//! ## Semantics
//!
//! * Three claim sets: *incoming* (evidence claims, issuer `AttestationService`,
//!   plus what rules add), *issued* (outgoing, to the token) and *properties*.
//! * Sections run in the order configurationrules → authorizationrules →
//!   issuancerules; rules run in textual order. A rule's conditions see the
//!   incoming set as it was when the rule started.
//! * A condition is true iff at least one incoming claim satisfies all of its
//!   property comparisons; `!cond` is true iff none does; `&&` needs all.
//!   Conditions are checked left to right and stop at the first false one.
//! * **Identifiers bind sets.** `c:[…]` binds *every* claim matching that
//!   condition. `c.value` evaluates to the values of all of them. Every
//!   expression evaluates to a value set (literals are singletons). The scalar
//!   functions (`JmesPath`, `AppendString`, `NegateBool`, `JsonToClaimValue`)
//!   apply element-wise (two-argument ones over the cartesian product);
//!   `IsSubsetOf(a, b)` and the first argument of `ContainsOnlyValue(set, v)`
//!   consume whole sets. An action creates one claim per element of
//!   `type × value`, so `c:[type=="x"] => issue(type="y", value=c.value)` runs
//!   once per matching claim (the "once per matching combination" rule), an
//!   empty set makes the action a no-op (this is how `JsonToClaimValue(null)`
//!   is a no-op) and a JSON array yields several claims. In a comparison
//!   `value == F1.value` is true if the value equals *any* element of the set,
//!   `!=` if it equals none, `< <= > >=` if it holds for some element.
//!   A binding is not narrowed by later conditions that reference it.
//! * Comparisons: `== !=` on any value (same type required, no coercion:
//!   the string `"1"` is not the integer `1`); `< <= > >=` only between
//!   integers (any other claim simply does not match).
//! * Actions: `permit()`/`deny()` only in authorizationrules. Any `deny()`
//!   stops evaluation at once with [`Decision::Deny`]; if authorizationrules
//!   ends without a `permit()` the decision is Deny (default deny) and
//!   issuancerules does not run. `add()` → incoming set; `issue()` → incoming
//!   and issued (in authorizationrules `issue()` is accepted, as in the docs'
//!   key-attestation sample, but only reaches the incoming set, since "no
//!   claims can be issued from authorizationrules to the response token");
//!   `issueproperty()` → incoming + properties. `issue(claim=c)` re-emits the
//!   bound claims unchanged (issuer kept) and does not duplicate them in the
//!   incoming set. New claims get issuer `AttestationPolicy` unless the action
//!   gives `issuer=`; `valueType=` ("String", "Integer", "Boolean") converts
//!   the value or fails.
//! * Functions (1.2): `JmesPath(json, query)` takes a [`ClaimValue::Json`] or
//!   JSON text and returns the **JSON text** of the result as a String (a
//!   string result stays JSON-quoted; `null` becomes `"null"`), with the MAA
//!   extension `equals_ignore_case(a, b)` (false unless both are strings).
//!   The query is parsed by the `jmespath` crate and evaluated by this
//!   crate's own metered interpreter (see Limits), which gives the crate's
//!   results (object keys sorted; checked by `tests/jmespath_compat.rs`)
//!   except in three corner cases: `avg([])` is `null`, `to_number` only
//!   converts number text, and an expression reference serializes as
//!   `"<expression>"`. Queries written as string literals in the policy are
//!   parsed once, when the policy is parsed ([`Policy::compiled_jmespath_queries`]),
//!   not on every call; a query built at evaluation time is parsed per call.
//!   The JSON text of a claim is parsed once per evaluation however many
//!   rules query it (an evaluation keeps at most 8 such texts, and at most
//!   an eighth of its memory budget, charged until it ends; texts a
//!   function builds for one call are parsed for that call). An array or
//!   object a `JmesPath` call returns is a String held as the structure it
//!   describes ([`ClaimValue::JsonString`]): a later rule's `JmesPath` or
//!   `JsonToClaimValue` reads the structure instead of parsing text, and the
//!   text (keys sorted, exactly the query's output) is written only when
//!   something reads the value as text; its length is known, and charged,
//!   from the start. Results deeper than 64 levels, or whose copy would
//!   take more than an eighth of the memory budget, are plain text.
//!   `JsonToClaimValue(x)` parses JSON text: integer → Integer, bool →
//!   Boolean, string → String, array of those → several values (null elements
//!   skipped), null → no value; fractions, objects and nested arrays are
//!   errors; Integer/Boolean arguments pass through. `IsSubsetOf(a, b)`,
//!   `AppendString(s1, s2)` (Strings only), `NegateBool(b)` (Boolean only),
//!   `ContainsOnlyValue(set, v)` (false for the empty set). Misuse is an
//!   [`EvalError`] naming the rule and its line.
//! * Read-only claims are not enforced. Legacy `$`-prefixed claim names
//!   (`$is-debuggable`, …) are **not** produced by [`Policy::evaluate`]: the
//!   caller adds them, e.g. with [`with_legacy_aliases`].
//!
//! ## Decisions on documented typos (tested in `tests/vectors.rs`)
//!
//! | # | Doc form | Decision |
//! |---|---|---|
//! | D1 | `[type="x", …]`, `issuer="AttestationPolicy"` (single `=` in a condition) | **accepted** as `==`: unambiguous (a condition never assigns) and it appears in the docs' runnable TPM 1.2 samples |
//! | D2 | smart quotes `”OSName”`, `"11”` | **rejected**: `expected '"' (ASCII double quote), found '”' (typographic quote U+201D)`; inside a string that then hits end of line the error points at the smart quote: `expected '"' to close the string` |
//! | D3 | `Issuancerules` | **rejected** (keywords are case-sensitive): `expected 'issuancerules' (keywords are case-sensitive) or end of policy, found 'Issuancerules'` |
//! | D4 | missing `;` after a rule | **rejected**: `expected ';' after the rule, found '}'` (or the next token) |
//! | D5 | `issue("PlatformAttested", value=true)` | **rejected**: `expected 'type', 'value', 'valueType', 'issuer' or 'claim', found '"PlatformAttested"'` |
//! | D6 | `NegateBol(…)` | **rejected**: `expected a function (JmesPath, …), found 'NegateBol'` |
//! | D7 | `ContainsOnlyValue(100)` (one argument) | **rejected**: `expected 2 arguments for ContainsOnlyValue, found 1 argument(s)` |
//! | D8 | `c:[…] … AppendString(c1.value, …)` (unbound `c1`) | **rejected**: `expected an identifier bound by an earlier condition of this rule, found 'c1'` |
//! | D9 | `value==<product-id>` template placeholder | **rejected**: `expected an expression …, found '<'` |
//! | D10 | `c :[…]` (space before `:`) | accepted (whitespace between tokens is free) |
//! | D11 | `issue(…)` inside authorizationrules | accepted, incoming set only (see Semantics) |
//! | D12 | rule fragments / tables that are not whole policies | rejected at line 1, column 1: `expected 'version'` |
//! | D13 | `version= 1.0;`, `version = 1.2;` | accepted |
//! | D14 | `//` comments in 1.0/1.1 policies | accepted in every version |
//!
//! ## Limits
//!
//! Policies are untrusted: draft policies (`draftPolicyForAttestation`) come
//! from anonymous callers, and stored policies run on every attestation. A
//! few lines of policy can ask for exponential memory or quadratic work, so
//! size is limited when parsing and every evaluation runs under a budget.
//! Nothing here ever panics.
//!
//! **Parsing.** Policy text ≤ 1 MiB ([`MAX_POLICY_BYTES`]); draft policies
//! should be parsed with [`Policy::parse_with_limit`]`(text,
//! `[`MAX_DRAFT_POLICY_BYTES`]`)`, 64 KiB — every published sample is under
//! 6 KiB, so this is over ten times what a real policy needs while keeping
//! what an anonymous caller can make the parser hold small. At most
//! [`MAX_RULES`] (10 000) rules, about 500 times the largest sample; the cap
//! bounds the parsed policy and the trace. Refusals for size have
//! [`ParseError::code`] `PolicyTooLarge` (other parse errors
//! `PolicyParsingError`). At most 32 nested function calls
//! ([`MAX_EXPR_DEPTH`]).
//!
//! **Fixed evaluation limits** (an [`EvalError`] of kind `Limit`, code
//! `PolicyEvaluationError`): ≤ 10 000 values per expression or claims per
//! action ([`MAX_VALUE_SET`]); JMESPath queries ≤ 16 KiB and ≤ 256 operators
//! ([`MAX_JMESPATH_OPERATORS`]: `. | [ ( { ! & @ *` and comparisons, which
//! bounds the nesting of the parsed query and so the recursion of the
//! parser and the interpreter); JSON nesting ≤ 128 (`serde_json`).
//!
//! **The budget.** [`Policy::evaluate_with_budget`] runs under a [`Budget`];
//! [`Policy::evaluate`] uses [`Budget::default`]. Running out is an
//! [`EvalErrorKind::Budget`] error that still names the rule and line that was
//! running; [`EvalError::usage`] and [`Evaluation::usage`] report what was
//! used. Every evaluation counts from zero.
//!
//! | Resource | Default | Counts | [`EvalError::code`] |
//! |---|---|---|---|
//! | [`Budget::max_value_bytes`] | 64 MiB | peak bytes of values held at once: strings and JSON the evaluation creates, JSON it parses, JMESPath intermediates and output, claims it creates or copies (and their copies in the trace and the issued set), its own bookkeeping. The caller's incoming claims are borrowed, never copied, and not counted. | `PolicyMemoryLimitExceeded` |
//! | [`Budget::max_claims`] | 50 000 ([`MAX_CLAIMS`]) | claims held: incoming (given and added), issued, properties; `add(claim=c)` and `issue(claim=c)` copies included | `PolicyClaimLimitExceeded` |
//! | [`Budget::max_steps`] | 30 million | units of work (below) | `PolicyStepLimitExceeded` |
//! | [`Budget::deadline`] | none | wall-clock instant | `PolicyEvaluationTimeout` |
//! | [`Budget::cancel`] | none | a flag set by the caller (client gone) | `PolicyEvaluationCancelled` |
//!
//! Everything is charged **before** the work or the allocation it pays for,
//! and a charge that does not fit fails without being counted, so the
//! counters never exceed the budget and nothing over budget is ever built:
//! `AppendString` computes the result length first; JSON text is charged
//! for the tree `serde_json` will build (from one pass over its bytes)
//! before it is parsed; JMESPath output is written into a string whose every
//! reallocation is charged first; a condition charges one step per value it
//! compares each claim against before comparing. A *step* is one rule run,
//! one claim tested against one value, one value produced, one JMESPath node
//! evaluated (field lookups count more), or one share of a byte-heavy
//! operation (16 bytes copied or written, 128 compared; parsing JSON by its
//! shape). Charging is a few integer operations; the clock and the
//! cancellation flag are only looked at every 16 384 steps (and when
//! evaluation starts), and never when neither is set.
//!
//! *Why these defaults.* Measured on a 2.3 GHz cloud vCPU (the 2-core build
//! machine, under load): a step costs 1–13 ns depending on the operation, so
//! the 30 million step budget stops any policy within about 0.4 s of CPU
//! (0.02–0.4 s across the hostile classes below). MAA's default SGX policy
//! takes ~300 steps (100 000 times less: a rule testing `type == "…"` looks
//! the type up instead of scanning every claim); the published TPM samples over a
//! realistic 100-event boot log take at most ~160 000 steps (0.5%). 64 MiB
//! bounds one evaluation's memory to tens of MiB while leaving real policies
//! far below it: the samples peak under 450 KB (0.7%), except the one that
//! issues the whole boot log as a token claim, which holds it twice (issued
//! set and trace; 0.9 MB, 1.3%). A claim text `JmesPath` has parsed stays
//! in memory, and counted, until the evaluation ends (so that another rule
//! does not parse it again); a structured `JmesPath` result is counted as
//! its copy plus its text, as the text and the structure kept beside it
//! were counted before results were structured, when the two TPM samples
//! whose rules query earlier rules' results peaked at ~470–490 KB (0.7%). The counted bytes match the real heap (a
//! counting-allocator test checks the heap stays within the budget). Claims:
//! real evaluations hold at most ~120; 50 000 stops copy amplification
//! before it costs much memory. A server should still bound how many
//! evaluations run at once (memory is per evaluation) and may add a
//! deadline and a cancellation flag per request.
//!
//! *Which limit stops which hostile policy* (tests in `tests/budget.rs`,
//! real heap checked in `tests/heap.rs`, size refusals in
//! `tests/parse_limits.rs`):
//!
//! | Hostile class | Stopped by |
//! |---|---|
//! | string growth: `AppendString(c.value, c.value)` chained, doubling per rule | value bytes (at the 22nd doubling with the defaults) |
//! | JMESPath multi-select across rules, `JmesPath(c.value, "[@,@,@,@,@,@,@,@]")` | value bytes (the growing text, parsed and written) |
//! | JMESPath amplification inside one query (shared nodes expanded by output, `to_string`, `join`) | value bytes, or steps when the expanded values are small |
//! | JMESPath equality between separately built shared trees | steps |
//! | JMESPath over large attester-controlled JSON (runtime data ~1 MiB) | steps (every node visited; JSON text charged by size before parsing) |
//! | `add(claim=c)` / `issue(claim=c)` copies | claims |
//! | joins across bound claims (`c2:[…, value==c1.value]`), `IsSubsetOf` over large sets | steps (one per comparison) |
//! | thousands of rules scanning a growing incoming set | steps ([`MAX_RULES`] caps the rule count) |
//! | oversized policy text | `PolicyTooLarge` when parsing |
//!
//! ## Hash
//!
//! [`policy_hash`] computes MAA's `x-ms-policy-hash`:
//! `base64url_nopad(SHA-256(ASCII(base64url_nopad(UTF-8(policy text)))))`.

mod ast;
mod budget;
mod eval;
mod jmes;
mod lexer;
mod parser;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use ast::{
    Action, ClaimSpec, Condition, Expr, ExprKind, Func, Op, Prop, PropCondition, Rule, Section,
    Span, StrLit,
};
pub use budget::{Budget, BudgetResource, BudgetUsage};
pub use eval::{MAX_CLAIMS, MAX_JMESPATH_OPERATORS, MAX_JMESPATH_QUERY_BYTES, MAX_VALUE_SET};
pub use parser::{MAX_DRAFT_POLICY_BYTES, MAX_EXPR_DEPTH, MAX_POLICY_BYTES, MAX_RULES};

/// Issuer of claims parsed from evidence.
pub const ISSUER_SERVICE: &str = "AttestationService";
/// Issuer of claims created by policy rules.
pub const ISSUER_POLICY: &str = "AttestationPolicy";

/// A claim value. Serialized untagged (`true`, `42`, `"s"`, or the JSON itself).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClaimValue {
    Bool(bool),
    Integer(i64),
    String(String),
    /// Structured claims (objects/arrays such as `events`, `pcrs`, `x-ms-sgx-collateral`).
    Json(Value),
    /// A String whose text is the JSON text of an array or object a
    /// `JmesPath` call returned, kept as that structure ([`JsonString`]).
    /// It is a String in every way a policy or a token can tell: its
    /// `valueType`, comparisons, string functions and serialization all
    /// see the text. Only an evaluation produces it.
    #[serde(skip_deserializing)]
    JsonString(JsonString),
}

/// The JSON text of an array or object, held as the value it describes and
/// written out the first time something reads it as text.
///
/// Why: TPM policies chain `JmesPath` calls through claims
/// (`add(type="x", value=JmesPath(events, …))`, then `JmesPath(x, …)`).
/// Writing each intermediate result as text, only for the next rule to read
/// it back, was the largest cost of such an evaluation; the next rule and
/// `JsonToClaimValue` now read the structure, and the text is written only
/// if the claim is compared, concatenated, issued or serialized.
///
/// The value is what parsing the text gives, except that objects copied
/// from the input keep their input key order; the text is written with
/// every object's keys sorted, as `JmesPath` output has them, and is the
/// text the query produced. Its length is known, and charged to the
/// evaluation's budget, from the start.
#[derive(Clone)]
pub struct JsonString(std::sync::Arc<JsonStringInner>);

struct JsonStringInner {
    value: Value,
    text_len: usize,
    /// Heap bytes of `value` (as a copy of it allocates them).
    value_bytes: u64,
    text: std::sync::OnceLock<String>,
}

impl JsonString {
    /// `value` must have every object's keys sorted; `text_len` is the
    /// length of its JSON text and `value_bytes` its heap size.
    pub(crate) fn new(value: Value, text_len: usize, value_bytes: u64) -> JsonString {
        JsonString(std::sync::Arc::new(JsonStringInner {
            value,
            text_len,
            value_bytes,
            text: std::sync::OnceLock::new(),
        }))
    }

    /// The JSON text (written on the first call).
    pub fn as_str(&self) -> &str {
        self.0
            .text
            .get_or_init(|| crate::jmes::json_string_text(&self.0.value, self.0.text_len))
    }

    /// The value the text describes (objects in input key order).
    pub fn value(&self) -> &Value {
        &self.0.value
    }

    /// Length of the text in bytes, known without writing it.
    pub fn text_len(&self) -> usize {
        self.0.text_len
    }

    /// Heap bytes this value may hold: the structure and its text.
    pub(crate) fn heap_bytes(&self) -> u64 {
        self.0.value_bytes.saturating_add(self.0.text_len as u64)
    }
}

impl fmt::Debug for JsonString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for JsonString {
    fn eq(&self, other: &JsonString) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
    }
}

impl Serialize for JsonString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Strings compare by their text, whichever way they are held.
impl PartialEq for ClaimValue {
    fn eq(&self, other: &ClaimValue) -> bool {
        match (self, other) {
            (ClaimValue::Bool(a), ClaimValue::Bool(b)) => a == b,
            (ClaimValue::Integer(a), ClaimValue::Integer(b)) => a == b,
            (ClaimValue::Json(a), ClaimValue::Json(b)) => a == b,
            (ClaimValue::JsonString(a), ClaimValue::JsonString(b)) => a == b,
            (a, b) => match (a.as_text(), b.as_text()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
        }
    }
}

impl ClaimValue {
    /// The `valueType` a condition sees: `Boolean`, `Integer`, `String` or `Json`.
    pub fn value_type(&self) -> &'static str {
        match self {
            ClaimValue::Bool(_) => "Boolean",
            ClaimValue::Integer(_) => "Integer",
            ClaimValue::String(_) | ClaimValue::JsonString(_) => "String",
            ClaimValue::Json(_) => "Json",
        }
    }

    /// The text of a String value (either form).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ClaimValue::String(s) => Some(s),
            ClaimValue::JsonString(j) => Some(j.as_str()),
            _ => None,
        }
    }

    /// The value as JSON (Integer → number, Boolean → bool, Json as-is).
    pub fn to_json(&self) -> Value {
        match self {
            ClaimValue::Bool(b) => Value::Bool(*b),
            ClaimValue::Integer(i) => Value::from(*i),
            ClaimValue::String(s) => Value::String(s.clone()),
            ClaimValue::JsonString(j) => Value::String(j.as_str().to_owned()),
            ClaimValue::Json(j) => j.clone(),
        }
    }
}

/// A claim: type, value and issuer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    #[serde(rename = "type")]
    pub claim_type: String,
    pub value: ClaimValue,
    pub issuer: String,
}

impl Claim {
    /// A claim issued by the attestation service (evidence claim).
    pub fn service(claim_type: impl Into<String>, value: ClaimValue) -> Claim {
        Claim {
            claim_type: claim_type.into(),
            value,
            issuer: ISSUER_SERVICE.to_string(),
        }
    }

    /// A claim created by a policy rule.
    pub fn policy(claim_type: impl Into<String>, value: ClaimValue) -> Claim {
        Claim {
            claim_type: claim_type.into(),
            value,
            issuer: ISSUER_POLICY.to_string(),
        }
    }
}

/// A syntax or static error, with the 1-based line and column where it was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}, column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub expected: String,
    pub found: String,
    /// Whether the policy was refused for its size rather than its syntax.
    pub kind: ParseErrorKind,
}

/// Why a policy was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParseErrorKind {
    /// A syntax or static error.
    Syntax,
    /// The text is longer than the size limit, or has more than
    /// [`MAX_RULES`] rules.
    TooLarge,
}

impl ParseError {
    /// The stable error code the HTTP service returns: `PolicyTooLarge` for
    /// a size refusal, `PolicyParsingError` otherwise.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ParseErrorKind::Syntax => "PolicyParsingError",
            ParseErrorKind::TooLarge => "PolicyTooLarge",
        }
    }
}

/// What went wrong while evaluating a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "lowercase")]
pub enum EvalErrorKind {
    #[error("{function}: {message}")]
    Function { function: String, message: String },
    #[error("JmesPath: {0}")]
    JmesPath(String),
    #[error("type error: {0}")]
    Type(String),
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The evaluation ran out of its [`Budget`].
    #[error("evaluation budget exhausted ({resource}): {message}")]
    Budget {
        resource: BudgetResource,
        message: String,
    },
}

impl EvalErrorKind {
    /// The stable error code the HTTP service returns:
    /// `PolicyEvaluationError` for ordinary evaluation errors (type,
    /// function and JMESPath misuse, the fixed limits), and for budget
    /// exhaustion [`BudgetResource::code`]: `PolicyMemoryLimitExceeded`,
    /// `PolicyClaimLimitExceeded`, `PolicyStepLimitExceeded`,
    /// `PolicyEvaluationTimeout` or `PolicyEvaluationCancelled`.
    pub fn code(&self) -> &'static str {
        match self {
            EvalErrorKind::Budget { resource, .. } => resource.code(),
            EvalErrorKind::Function { .. }
            | EvalErrorKind::JmesPath(_)
            | EvalErrorKind::Type(_)
            | EvalErrorKind::Limit(_) => "PolicyEvaluationError",
        }
    }

    /// The budget resource that ran out, if this is a budget error.
    pub fn budget_resource(&self) -> Option<BudgetResource> {
        match self {
            EvalErrorKind::Budget { resource, .. } => Some(*resource),
            _ => None,
        }
    }
}

/// A runtime error, located at the rule that raised it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}: {kind}", location(*section, *rule, *line))]
pub struct EvalError {
    /// `None` when the error is not tied to a rule (input limits).
    pub section: Option<Section>,
    /// 1-based rule index within the section (0 when not tied to a rule).
    pub rule: usize,
    pub line: usize,
    pub column: usize,
    pub kind: EvalErrorKind,
    /// How much of the budget had been used when the error was raised.
    pub usage: BudgetUsage,
}

impl EvalError {
    /// The stable error code of [`Self::kind`] (see [`EvalErrorKind::code`]).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

fn location(section: Option<Section>, rule: usize, line: usize) -> String {
    match section {
        Some(s) => format!("rule {rule} of {} (line {line})", s.keyword()),
        None => "input".to_string(),
    }
}

/// A parsed policy.
#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    version: (u32, u32),
    configuration: Option<Vec<Rule>>,
    authorization: Vec<Rule>,
    issuance: Option<Vec<Rule>>,
    /// Its literal JMESPath queries, parsed once here rather than on every
    /// call (shared by clones).
    #[serde(skip)]
    queries: std::sync::Arc<jmes::Queries>,
}

impl Policy {
    /// How many of the policy's JMESPath queries (string literals) were
    /// parsed when it was compiled, and so are not parsed per call.
    pub fn compiled_jmespath_queries(&self) -> usize {
        self.queries.len()
    }

    /// Parses policy text of at most [`MAX_POLICY_BYTES`]. See the crate
    /// documentation for the grammar.
    pub fn parse(text: &str) -> Result<Policy, ParseError> {
        Policy::parse_with_limit(text, MAX_POLICY_BYTES)
    }

    /// Parses policy text, refusing text longer than `max_bytes` (and never
    /// more than [`MAX_POLICY_BYTES`]) with a [`ParseError`] whose
    /// [`code`](ParseError::code) is `PolicyTooLarge`. Use
    /// [`MAX_DRAFT_POLICY_BYTES`] for unauthenticated draft policies.
    pub fn parse_with_limit(text: &str, max_bytes: usize) -> Result<Policy, ParseError> {
        let p = parser::parse(text, max_bytes.min(MAX_POLICY_BYTES))?;
        let queries = jmes::compile_queries(
            p.configuration
                .iter()
                .flatten()
                .chain(&p.authorization)
                .chain(p.issuance.iter().flatten()),
        );
        Ok(Policy {
            version: p.version,
            configuration: p.configuration,
            authorization: p.authorization,
            issuance: p.issuance,
            queries: std::sync::Arc::new(queries),
        })
    }

    /// `(1, 0)`, `(1, 1)` or `(1, 2)`.
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// The rules of a section (`None` when the section is absent).
    pub fn rules(&self, section: Section) -> Option<&[Rule]> {
        match section {
            Section::Configuration => self.configuration.as_deref(),
            Section::Authorization => Some(&self.authorization),
            Section::Issuance => self.issuance.as_deref(),
        }
    }

    /// Evaluates the policy against the incoming (evidence) claims under the
    /// default [`Budget`].
    pub fn evaluate(&self, incoming: &[Claim]) -> Result<Evaluation, EvalError> {
        self.evaluate_with_budget(incoming, &Budget::default())
    }

    /// Evaluates the policy against the incoming (evidence) claims under
    /// `budget`. Running out of any part of the budget stops evaluation with
    /// an [`EvalErrorKind::Budget`] error naming the rule that was running;
    /// nothing is allocated or computed past the budget. Each call counts
    /// from zero: evaluations never share budget state.
    pub fn evaluate_with_budget(
        &self,
        incoming: &[Claim],
        budget: &Budget,
    ) -> Result<Evaluation, EvalError> {
        eval::evaluate(self, incoming, budget)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Permit,
    Deny,
}

/// One evaluated rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceEntry {
    pub section: Section,
    /// 1-based index within the section.
    pub rule: usize,
    pub line: usize,
    /// Whether all conditions held.
    pub matched: bool,
    /// `permit`, `deny`, `add`, `issue` or `issueproperty` when matched.
    pub action: Option<&'static str>,
    /// Claims the action produced.
    pub produced: Vec<Claim>,
}

/// Result of [`Policy::evaluate`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub deny_reason: Option<String>,
    /// Outgoing claims in order (empty when denied).
    pub issued: Vec<Claim>,
    /// `issueproperty` claims in order.
    pub properties: Vec<Claim>,
    pub trace: Vec<TraceEntry>,
    /// How much of the budget the evaluation used.
    pub usage: BudgetUsage,
}

impl Evaluation {
    /// Issued claims as a JSON object: type → value; several claims of one
    /// type → JSON array of their values.
    pub fn issued_json(&self) -> Map<String, Value> {
        group(&self.issued)
    }

    /// Property claims as a JSON object (same shape as [`Self::issued_json`]).
    pub fn properties_json(&self) -> Map<String, Value> {
        group(&self.properties)
    }

    /// `{"decision", "deny_reason"? , "issued", "properties", "trace"}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "decision".into(),
            Value::String(
                match self.decision {
                    Decision::Permit => "permit",
                    Decision::Deny => "deny",
                }
                .into(),
            ),
        );
        if let Some(r) = &self.deny_reason {
            m.insert("deny_reason".into(), Value::String(r.clone()));
        }
        m.insert("issued".into(), Value::Object(self.issued_json()));
        m.insert("properties".into(), Value::Object(self.properties_json()));
        m.insert(
            "trace".into(),
            serde_json::to_value(&self.trace).unwrap_or(Value::Null),
        );
        Value::Object(m)
    }
}

/// Groups claims by type, preserving first-appearance order.
fn group(claims: &[Claim]) -> Map<String, Value> {
    let mut order: Vec<&str> = Vec::new();
    let mut values: std::collections::HashMap<&str, Vec<Value>> = Default::default();
    for c in claims {
        let e = values.entry(c.claim_type.as_str()).or_default();
        if e.is_empty() {
            order.push(c.claim_type.as_str());
        }
        e.push(c.value.to_json());
    }
    let mut map = Map::new();
    for t in order {
        let mut vs = values.remove(t).unwrap_or_default();
        let v = if vs.len() == 1 {
            vs.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(vs)
        };
        map.insert(t.to_string(), v);
    }
    map
}

fn scalar_claim(claim_type: &str, v: &Value) -> Option<Claim> {
    let value = match v {
        Value::Null => return None,
        Value::Bool(b) => ClaimValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ClaimValue::Integer(i),
            None => ClaimValue::Json(v.clone()),
        },
        Value::String(s) => ClaimValue::String(s.clone()),
        Value::Array(_) | Value::Object(_) => ClaimValue::Json(v.clone()),
    };
    Some(Claim::service(claim_type, value))
}

/// Converts a JSON object (evidence claims, or a decoded token's claims) to
/// incoming claims with issuer `AttestationService`: bool/integer/string map
/// to their [`ClaimValue`]; objects (and non-integer numbers) to
/// [`ClaimValue::Json`]; an array of scalars to several claims of that type
/// (nulls skipped); an array containing objects or arrays stays **one**
/// Json claim (e.g. `x-ms-tpm-other-keys`, queried as a whole with `[*]` by
/// the documented policies); `null` values are skipped.
pub fn claims_from_json(obj: &Map<String, Value>) -> Vec<Claim> {
    let mut out = Vec::new();
    for (k, v) in obj {
        match v {
            Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
                out.extend(items.iter().filter_map(|i| scalar_claim(k, i)));
            }
            _ => out.extend(scalar_claim(k, v)),
        }
    }
    out
}

/// Legacy `$`-names used by old SGX policies, and the claim each aliases.
pub const LEGACY_ALIASES: [(&str, &str); 9] = [
    ("$is-debuggable", "x-ms-sgx-is-debuggable"),
    ("$sgx-mrsigner", "x-ms-sgx-mrsigner"),
    ("$sgx-mrenclave", "x-ms-sgx-mrenclave"),
    ("$product-id", "x-ms-sgx-product-id"),
    ("$svn", "x-ms-sgx-svn"),
    ("$tee", "x-ms-attestation-type"),
    ("$maa-ehd", "x-ms-sgx-ehd"),
    ("$aas-ehd", "x-ms-sgx-ehd"),
    ("$maa-attestationcollateral", "x-ms-sgx-collateral"),
];

/// Returns `incoming` followed by a copy of each SGX claim under its legacy
/// `$`-name (see [`LEGACY_ALIASES`]). [`Policy::evaluate`] never adds these
/// itself: the service calls this for SGX/OpenEnclave attestation so that
/// legacy policies (`c:[type=="$is-debuggable"] => …`) keep working.
pub fn with_legacy_aliases(incoming: &[Claim]) -> Vec<Claim> {
    let mut out = incoming.to_vec();
    add_legacy_aliases(&mut out);
    out
}

/// [`with_legacy_aliases`] in place: appends the aliases to `claims`
/// without copying the claims that are already there.
pub fn add_legacy_aliases(claims: &mut Vec<Claim>) {
    let original = claims.len();
    for (alias, name) in LEGACY_ALIASES {
        for i in 0..original {
            if let Some(c) = claims.get(i).filter(|c| c.claim_type == name) {
                let copy = Claim {
                    claim_type: alias.to_string(),
                    value: c.value.clone(),
                    issuer: c.issuer.clone(),
                };
                claims.push(copy);
            }
        }
    }
}

/// MAA `x-ms-policy-hash`:
/// `base64url_nopad(SHA-256(ASCII(base64url_nopad(UTF-8(text)))))`.
pub fn policy_hash(text: &str) -> String {
    let encoded = URL_SAFE_NO_PAD.encode(text.as_bytes());
    URL_SAFE_NO_PAD.encode(Sha256::digest(encoded.as_bytes()))
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Permit => "permit",
            Decision::Deny => "deny",
        })
    }
}
