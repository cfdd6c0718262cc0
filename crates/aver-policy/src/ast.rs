//! Abstract syntax tree of a parsed policy. Every node carries its [`Span`].

use serde::Serialize;

pub use crate::lexer::Span;

/// The three sections, in evaluation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    #[serde(rename = "configurationrules")]
    Configuration,
    #[serde(rename = "authorizationrules")]
    Authorization,
    #[serde(rename = "issuancerules")]
    Issuance,
}

impl Section {
    pub fn keyword(self) -> &'static str {
        match self {
            Section::Configuration => "configurationrules",
            Section::Authorization => "authorizationrules",
            Section::Issuance => "issuancerules",
        }
    }
}

/// `conditions? => action;`
#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    pub conditions: Vec<Condition>,
    pub action: Action,
    pub span: Span,
}

/// `!? (ident :)? [ prop op expr, ... ]`
#[derive(Clone, Debug, Serialize)]
pub struct Condition {
    pub negated: bool,
    pub binding: Option<String>,
    pub props: Vec<PropCondition>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct PropCondition {
    pub prop: Prop,
    pub op: Op,
    pub rhs: Expr,
    pub span: Span,
}

/// Claim property usable in conditions and in `ident.prop` references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Prop {
    #[serde(rename = "type")]
    Type,
    #[serde(rename = "value")]
    Value,
    #[serde(rename = "issuer")]
    Issuer,
    #[serde(rename = "valueType")]
    ValueType,
}

impl Prop {
    pub fn from_name(s: &str) -> Option<Prop> {
        match s {
            "type" => Some(Prop::Type),
            "value" => Some(Prop::Value),
            "issuer" => Some(Prop::Issuer),
            "valueType" => Some(Prop::ValueType),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    pub fn is_ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Action {
    Permit,
    Deny,
    Add(ClaimSpec),
    Issue(ClaimSpec),
    IssueProperty(ClaimSpec),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Permit => "permit",
            Action::Deny => "deny",
            Action::Add(_) => "add",
            Action::Issue(_) => "issue",
            Action::IssueProperty(_) => "issueproperty",
        }
    }
}

/// Argument of `add`/`issue`/`issueproperty`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase", tag = "form")]
pub enum ClaimSpec {
    /// `type=..., value=... [, valueType=...] [, issuer=...]` (any order).
    Fields {
        #[serde(rename = "type")]
        claim_type: Expr,
        value: Expr,
        value_type: Option<Expr>,
        issuer: Option<Expr>,
    },
    /// `claim=ident`: re-emit the claim(s) bound to `ident`.
    Copy { ident: String, span: Span },
}

/// Built-in functions (policy version 1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Func {
    JmesPath,
    JsonToClaimValue,
    IsSubsetOf,
    AppendString,
    NegateBool,
    ContainsOnlyValue,
}

impl Func {
    pub const ALL: [Func; 6] = [
        Func::JmesPath,
        Func::JsonToClaimValue,
        Func::IsSubsetOf,
        Func::AppendString,
        Func::NegateBool,
        Func::ContainsOnlyValue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::JmesPath => "JmesPath",
            Func::JsonToClaimValue => "JsonToClaimValue",
            Func::IsSubsetOf => "IsSubsetOf",
            Func::AppendString => "AppendString",
            Func::NegateBool => "NegateBool",
            Func::ContainsOnlyValue => "ContainsOnlyValue",
        }
    }

    pub fn from_name(s: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == s)
    }

    pub fn arity(self) -> usize {
        match self {
            Func::JsonToClaimValue | Func::NegateBool => 1,
            _ => 2,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExprKind {
    Str(StrLit),
    Int(i64),
    Bool(bool),
    Ref { ident: String, prop: Prop },
    Call { func: Func, args: Vec<Expr> },
}

/// A string literal, held as the String claim value it evaluates to: an
/// evaluation lends that value to every rule that reads it (a claim type
/// compared, a `JmesPath` query) instead of copying the text each time.
#[derive(Clone, Debug)]
pub struct StrLit(Box<crate::ClaimValue>);

impl StrLit {
    pub fn new(text: String) -> StrLit {
        StrLit(Box::new(crate::ClaimValue::String(text)))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_text().unwrap_or_default()
    }

    /// The value the literal evaluates to (always a `ClaimValue::String`).
    pub(crate) fn value(&self) -> &crate::ClaimValue {
        &self.0
    }
}

impl Serialize for StrLit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
