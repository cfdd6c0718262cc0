//! Hand-written recursive-descent parser. See the crate documentation for the
//! grammar and for every deliberate decision about documented typos.

use crate::ast::*;
use crate::lexer::{Lexer, Tok};
use crate::{ParseError, ParseErrorKind};

/// Largest accepted policy text, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Largest draft policy ([`crate::Policy::parse_with_limit`] for the
/// unauthenticated `draftPolicyForAttestation`): 64 KiB. Every published
/// MAA sample is under 6 KiB (the longest, the Linux boot-signer sample, is
/// 5 KiB), so this leaves more than ten times the room a real policy needs
/// while keeping what an anonymous caller can make the parser hold small.
pub const MAX_DRAFT_POLICY_BYTES: usize = 64 * 1024;
/// Most rules in one policy (all sections together): 10 000. The largest
/// published sample has about 20; the cap bounds the parsed policy and the
/// evaluation trace (one entry per rule run) independently of the budget.
pub const MAX_RULES: usize = 10_000;
/// Deepest accepted nesting of function calls inside one expression.
pub const MAX_EXPR_DEPTH: usize = 32;

pub struct Parsed {
    pub version: (u32, u32),
    pub configuration: Option<Vec<Rule>>,
    pub authorization: Vec<Rule>,
    pub issuance: Option<Vec<Rule>>,
}

/// Parses `text`, refusing more than `max_bytes` bytes before looking at it.
pub fn parse(text: &str, max_bytes: usize) -> Result<Parsed, ParseError> {
    if text.len() > max_bytes {
        return Err(ParseError {
            line: 1,
            column: 1,
            expected: format!("a policy of at most {max_bytes} bytes"),
            found: format!("{} bytes", text.len()),
            kind: ParseErrorKind::TooLarge,
        });
    }
    let mut p = Parser {
        lx: Lexer::new(text),
        version: (1, 0),
        section: Section::Authorization,
        bound: Vec::new(),
        rules: 0,
    };
    p.policy()
}

struct Parser<'a> {
    lx: Lexer<'a>,
    version: (u32, u32),
    section: Section,
    /// Identifiers bound by earlier conditions of the rule being parsed.
    bound: Vec<String>,
    /// Rules parsed so far, in all sections.
    rules: usize,
}

fn keyword_hint(found: &Tok, keyword: &str) -> String {
    match found {
        Tok::Ident(s) if s != keyword && s.eq_ignore_ascii_case(keyword) => {
            format!("'{keyword}' (keywords are case-sensitive)")
        }
        _ => format!("'{keyword}'"),
    }
}

impl<'a> Parser<'a> {
    fn error_at(&self, span: Span, expected: impl Into<String>, found: &Tok) -> ParseError {
        // The lexer knows better what was expected inside a malformed token.
        let expected = match found {
            Tok::Invalid {
                expected: Some(e), ..
            } => e.clone(),
            _ => expected.into(),
        };
        ParseError {
            line: span.line,
            column: span.column,
            expected,
            found: found.describe(),
            kind: ParseErrorKind::Syntax,
        }
    }

    /// Error about the next token (not consumed).
    fn error_next(&mut self, expected: impl Into<String>) -> ParseError {
        let (tok, span) = self.lx.peek().clone();
        self.error_at(span, expected, &tok)
    }

    fn expect_token(&mut self, want: Tok, expected: &str) -> Result<Span, ParseError> {
        let (tok, span) = self.lx.peek().clone();
        if tok == want {
            self.lx.next_tok();
            Ok(span)
        } else {
            Err(self.error_at(span, expected, &tok))
        }
    }

    fn peek_is(&mut self, want: &Tok) -> bool {
        &self.lx.peek().0 == want
    }

    fn peek_ident(&mut self, word: &str) -> bool {
        matches!(&self.lx.peek().0, Tok::Ident(s) if s == word)
    }

    fn expect_keyword(&mut self, word: &str, expected: &str) -> Result<Span, ParseError> {
        let (tok, span) = self.lx.peek().clone();
        if matches!(&tok, Tok::Ident(s) if s == word) {
            self.lx.next_tok();
            Ok(span)
        } else {
            let expected = if expected.is_empty() {
                keyword_hint(&tok, word)
            } else {
                expected.to_string()
            };
            Err(self.error_at(span, expected, &tok))
        }
    }

    fn policy(&mut self) -> Result<Parsed, ParseError> {
        self.expect_keyword("version", "")?;
        self.expect_token(Tok::Assign, "'=' after 'version'")?;
        let (major_tok, major_span) = self.lx.next_tok();
        let major = match major_tok {
            Tok::Int(v) => v,
            other => {
                return Err(self.error_at(
                    major_span,
                    "a version number (1.0, 1.1 or 1.2)",
                    &other,
                ));
            }
        };
        self.expect_token(Tok::Dot, "'.' in the version number (1.0, 1.1 or 1.2)")?;
        let (minor_tok, minor_span) = self.lx.next_tok();
        let minor = match minor_tok {
            Tok::Int(v) => v,
            other => {
                return Err(self.error_at(
                    minor_span,
                    "a version number (1.0, 1.1 or 1.2)",
                    &other,
                ));
            }
        };
        if major != 1 || !(0..=2).contains(&minor) {
            return Err(ParseError {
                line: major_span.line,
                column: major_span.column,
                expected: "version 1.0, 1.1 or 1.2".into(),
                found: format!("'{major}.{minor}'"),
                kind: ParseErrorKind::Syntax,
            });
        }
        // Checked above: 0 <= minor <= 2.
        self.version = (1, minor as u32);
        self.expect_token(Tok::Semi, "';' after the version")?;

        let mut configuration = None;
        if self.peek_ident("configurationrules") {
            if self.version < (1, 1) {
                return Err(self.error_next(
                    "'authorizationrules' (configurationrules requires version=1.1 or later)",
                ));
            }
            self.lx.next_tok();
            configuration = Some(self.section_body(Section::Configuration)?);
        }
        let auth_expected = if configuration.is_none() && self.version >= (1, 1) {
            "'configurationrules' or 'authorizationrules'"
        } else {
            ""
        };
        self.expect_keyword("authorizationrules", auth_expected)?;
        let authorization = self.section_body(Section::Authorization)?;
        let mut issuance = None;
        if self.peek_ident("issuancerules") {
            self.lx.next_tok();
            issuance = Some(self.section_body(Section::Issuance)?);
        }
        let (tok, span) = self.lx.peek().clone();
        if tok != Tok::Eof {
            let expected = if issuance.is_none() {
                format!("{} or end of policy", keyword_hint(&tok, "issuancerules"))
            } else {
                "end of policy".to_string()
            };
            return Err(self.error_at(span, expected, &tok));
        }
        Ok(Parsed {
            version: self.version,
            configuration,
            authorization,
            issuance,
        })
    }

    fn section_body(&mut self, section: Section) -> Result<Vec<Rule>, ParseError> {
        self.section = section;
        let open = format!("'{{' after '{}'", section.keyword());
        self.expect_token(Tok::LBrace, &open)?;
        let mut rules = Vec::new();
        while !self.peek_is(&Tok::RBrace) {
            if self.peek_is(&Tok::Eof) {
                return Err(
                    self.error_next(format!("a rule or '}}' to close {}", section.keyword()))
                );
            }
            rules.push(self.rule()?);
        }
        self.lx.next_tok();
        self.expect_token(Tok::Semi, "';' after the section's '}'")?;
        Ok(rules)
    }

    fn rule(&mut self) -> Result<Rule, ParseError> {
        self.bound.clear();
        let span = self.lx.peek().1;
        if self.rules >= MAX_RULES {
            return Err(ParseError {
                line: span.line,
                column: span.column,
                expected: format!("at most {MAX_RULES} rules in a policy"),
                found: format!("rule {}", self.rules + 1),
                kind: ParseErrorKind::TooLarge,
            });
        }
        self.rules += 1;
        let mut conditions = Vec::new();
        if !self.peek_is(&Tok::Arrow) {
            conditions.push(self.condition()?);
            while self.peek_is(&Tok::AndAnd) {
                self.lx.next_tok();
                conditions.push(self.condition()?);
            }
            self.expect_token(Tok::Arrow, "'&&' or '=>' after the condition")?;
        } else {
            self.lx.next_tok();
        }
        let action = self.action()?;
        self.expect_token(Tok::Semi, "';' after the rule")?;
        Ok(Rule {
            conditions,
            action,
            span,
        })
    }

    fn condition(&mut self) -> Result<Condition, ParseError> {
        let span = self.lx.peek().1;
        let mut negated = false;
        if self.peek_is(&Tok::Bang) {
            if self.version < (1, 2) {
                return Err(self.error_next(
                    "a condition ('[' or 'name:['); the '!' operator requires version=1.2",
                ));
            }
            self.lx.next_tok();
            negated = true;
        }
        let mut binding = None;
        let (tok, tspan) = self.lx.peek().clone();
        if let Tok::Ident(name) = tok {
            if negated {
                return Err(self.error_at(
                    tspan,
                    "'[' (a negated condition cannot bind an identifier)",
                    &Tok::Ident(name),
                ));
            }
            if self.bound.contains(&name) {
                return Err(self.error_at(
                    tspan,
                    "an identifier not already bound in this rule",
                    &Tok::Ident(name),
                ));
            }
            self.lx.next_tok();
            self.expect_token(Tok::Colon, "':' after the condition's identifier")?;
            binding = Some(name);
        }
        let open = if binding.is_some() || negated {
            "'['"
        } else {
            "a condition ('[' or 'name:[')"
        };
        self.expect_token(Tok::LBracket, open)?;
        let mut props = vec![self.prop_condition()?];
        loop {
            let (tok, span) = self.lx.next_tok();
            match tok {
                Tok::Comma => props.push(self.prop_condition()?),
                Tok::RBracket => break,
                other => return Err(self.error_at(span, "',' or ']' in the condition", &other)),
            }
        }
        if let Some(b) = &binding {
            self.bound.push(b.clone());
        }
        Ok(Condition {
            negated,
            binding,
            props,
            span,
        })
    }

    fn prop_condition(&mut self) -> Result<PropCondition, ParseError> {
        let (tok, span) = self.lx.next_tok();
        let prop = match &tok {
            Tok::Ident(s) => Prop::from_name(s),
            _ => None,
        };
        let Some(prop) = prop else {
            return Err(self.error_at(
                span,
                "a claim property (type, value, issuer, valueType)",
                &tok,
            ));
        };
        let (op_tok, op_span) = self.lx.next_tok();
        let op = match op_tok {
            Tok::EqEq | Tok::Assign => Op::Eq, // `=` accepted: see crate docs (decision D1)
            Tok::NotEq => Op::Ne,
            Tok::Lt => Op::Lt,
            Tok::Le => Op::Le,
            Tok::Gt => Op::Gt,
            Tok::Ge => Op::Ge,
            other => {
                return Err(self.error_at(
                    op_span,
                    "a comparison operator (==, !=, <, <=, >, >=)",
                    &other,
                ));
            }
        };
        if op.is_ordering() && prop != Prop::Value {
            return Err(self.error_at(
                op_span,
                "'==' or '!=' (only 'value' can be ordered)",
                &op_tok,
            ));
        }
        let rhs = self.expr(0)?;
        if op.is_ordering() {
            let bad = match &rhs.kind {
                ExprKind::Str(s) => Some(Tok::Str(s.as_str().to_owned())),
                ExprKind::Bool(b) => Some(Tok::Ident(b.to_string())),
                _ => None,
            };
            if let Some(bad) = bad {
                return Err(self.error_at(
                    rhs.span,
                    "an integer operand (<, <=, >, >= compare integers only)",
                    &bad,
                ));
            }
        }
        Ok(PropCondition {
            prop,
            op,
            rhs,
            span,
        })
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let (tok, span) = self.lx.next_tok();
        let kind = match tok {
            Tok::Str(s) => ExprKind::Str(StrLit::new(s)),
            Tok::Int(i) => ExprKind::Int(i),
            Tok::Ident(name) if name == "true" => ExprKind::Bool(true),
            Tok::Ident(name) if name == "false" => ExprKind::Bool(false),
            Tok::Ident(name) => {
                let (next, next_span) = self.lx.peek().clone();
                match next {
                    Tok::Dot => {
                        if !self.bound.contains(&name) {
                            return Err(self.error_at(
                                span,
                                "an identifier bound by an earlier condition of this rule",
                                &Tok::Ident(name),
                            ));
                        }
                        self.lx.next_tok();
                        let (ptok, pspan) = self.lx.next_tok();
                        let prop = match &ptok {
                            Tok::Ident(p) => Prop::from_name(p),
                            _ => None,
                        };
                        let Some(prop) = prop else {
                            return Err(self.error_at(
                                pspan,
                                "a claim property (type, value, issuer, valueType)",
                                &ptok,
                            ));
                        };
                        ExprKind::Ref { ident: name, prop }
                    }
                    Tok::LParen => {
                        let Some(func) = Func::from_name(&name) else {
                            let names: Vec<&str> = Func::ALL.iter().map(|f| f.name()).collect();
                            return Err(self.error_at(
                                span,
                                format!("a function ({})", names.join(", ")),
                                &Tok::Ident(name),
                            ));
                        };
                        if self.version < (1, 2) {
                            return Err(self.error_at(
                                span,
                                "an expression (function calls require version=1.2)",
                                &Tok::Ident(name),
                            ));
                        }
                        if depth >= MAX_EXPR_DEPTH {
                            return Err(self.error_at(
                                span,
                                format!("at most {MAX_EXPR_DEPTH} nested function calls"),
                                &Tok::Ident(name),
                            ));
                        }
                        self.lx.next_tok();
                        let mut args = Vec::new();
                        if !self.peek_is(&Tok::RParen) {
                            args.push(self.expr(depth + 1)?);
                            while self.peek_is(&Tok::Comma) {
                                self.lx.next_tok();
                                args.push(self.expr(depth + 1)?);
                            }
                        }
                        let (close, close_span) = self.lx.next_tok();
                        if close != Tok::RParen {
                            return Err(self.error_at(
                                close_span,
                                format!("',' or ')' in the arguments of {name}"),
                                &close,
                            ));
                        }
                        if args.len() != func.arity() {
                            let plural = if func.arity() == 1 { "" } else { "s" };
                            return Err(ParseError {
                                line: span.line,
                                column: span.column,
                                expected: format!(
                                    "{} argument{plural} for {}",
                                    func.arity(),
                                    func.name()
                                ),
                                found: format!("{} argument(s)", args.len()),
                                kind: ParseErrorKind::Syntax,
                            });
                        }
                        ExprKind::Call { func, args }
                    }
                    other => {
                        return Err(self.error_at(
                            next_span,
                            format!("'.' or '(' after '{name}'"),
                            &other,
                        ));
                    }
                }
            }
            other => {
                return Err(self.error_at(
                    span,
                    "an expression (string, integer, true, false, name.property or function call)",
                    &other,
                ));
            }
        };
        Ok(Expr { kind, span })
    }

    fn action(&mut self) -> Result<Action, ParseError> {
        let (tok, span) = self.lx.next_tok();
        let allowed: &[&str] = match self.section {
            Section::Configuration => &["add", "issueproperty"],
            Section::Authorization => &["permit", "deny", "add", "issue"],
            Section::Issuance => &["add", "issue", "issueproperty"],
        };
        let name = match &tok {
            Tok::Ident(s) if allowed.contains(&s.as_str()) => s.clone(),
            _ => {
                return Err(self.error_at(
                    span,
                    format!(
                        "an action allowed in {} ({})",
                        self.section.keyword(),
                        allowed.join(", ")
                    ),
                    &tok,
                ));
            }
        };
        let paren = format!("'(' after '{name}'");
        self.expect_token(Tok::LParen, &paren)?;
        match name.as_str() {
            "permit" | "deny" => {
                let close = format!("')' ({name}() takes no arguments)");
                self.expect_token(Tok::RParen, &close)?;
                Ok(if name == "permit" {
                    Action::Permit
                } else {
                    Action::Deny
                })
            }
            _ => {
                let spec = self.claim_spec(&name)?;
                Ok(match name.as_str() {
                    "add" => Action::Add(spec),
                    "issue" => Action::Issue(spec),
                    _ => Action::IssueProperty(spec),
                })
            }
        }
    }

    fn claim_spec(&mut self, action: &str) -> Result<ClaimSpec, ParseError> {
        const FIELDS: &str = "'type', 'value', 'valueType', 'issuer' or 'claim'";
        let mut claim_type = None;
        let mut value = None;
        let mut value_type = None;
        let mut issuer = None;
        let mut first = true;
        loop {
            let (tok, span) = self.lx.next_tok();
            let field = match &tok {
                Tok::Ident(s) => s.clone(),
                _ => return Err(self.error_at(span, FIELDS, &tok)),
            };
            if field == "claim" {
                if !first {
                    return Err(self.error_at(
                        span,
                        "'valueType' or 'issuer' ('claim=' cannot be combined with other fields)",
                        &tok,
                    ));
                }
                self.expect_token(Tok::Assign, "'=' after 'claim'")?;
                let (itok, ispan) = self.lx.next_tok();
                let ident = match &itok {
                    Tok::Ident(s) if self.bound.contains(s) => s.clone(),
                    _ => {
                        return Err(self.error_at(
                            ispan,
                            "an identifier bound by a condition of this rule",
                            &itok,
                        ));
                    }
                };
                self.expect_token(Tok::RParen, "')' after 'claim=identifier'")?;
                return Ok(ClaimSpec::Copy { ident, span: ispan });
            }
            first = false;
            let slot = match field.as_str() {
                "type" => &mut claim_type,
                "value" => &mut value,
                "valueType" => &mut value_type,
                "issuer" => &mut issuer,
                _ => return Err(self.error_at(span, FIELDS, &tok)),
            };
            if slot.is_some() {
                return Err(self.error_at(
                    span,
                    format!("each field once ('{field}' repeated)"),
                    &tok,
                ));
            }
            let eq = format!("'=' after '{field}'");
            self.expect_token(Tok::Assign, &eq)?;
            let e = self.expr(0)?;
            *slot = Some(e);
            let (sep, sep_span) = self.lx.next_tok();
            match sep {
                Tok::Comma => continue,
                Tok::RParen => {
                    return match (claim_type, value) {
                        (Some(claim_type), Some(value)) => Ok(ClaimSpec::Fields {
                            claim_type,
                            value,
                            value_type,
                            issuer,
                        }),
                        _ => Err(self.error_at(
                            sep_span,
                            format!("both 'type=' and 'value=' in {action}()"),
                            &sep,
                        )),
                    };
                }
                other => {
                    return Err(self.error_at(
                        sep_span,
                        format!("',' or ')' in {action}()"),
                        &other,
                    ));
                }
            }
        }
    }
}
