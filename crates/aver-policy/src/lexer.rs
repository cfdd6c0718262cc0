//! Hand-written, on-demand lexer for the claim-rule language.
//!
//! The parser pulls tokens one at a time, so a lexical problem late in the
//! text never hides an earlier syntax error. Malformed input never produces a
//! lexer error directly: it becomes a [`Tok::Invalid`] token that the parser
//! turns into a [`crate::ParseError`] with the right "expected" text.

use serde::Serialize;

/// 1-based position in the policy text (column counted in Unicode scalar values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    /// `=`
    Assign,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=>`
    Arrow,
    /// `&&`
    AndAnd,
    /// `!`
    Bang,
    Semi,
    Comma,
    Dot,
    Colon,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Eof,
    /// Something that is not a token. `expected`/`found` describe it when the
    /// lexer knows better than the parser (unterminated strings, bad escapes).
    Invalid {
        expected: Option<String>,
        found: String,
    },
}

impl Tok {
    /// How the token is shown in error messages (`'issuancerules'`, `end of input`).
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{}'", truncate(s)),
            Tok::Str(s) => format!("'\"{}\"'", truncate(s)),
            Tok::Int(i) => format!("'{i}'"),
            Tok::Assign => "'='".into(),
            Tok::EqEq => "'=='".into(),
            Tok::NotEq => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Arrow => "'=>'".into(),
            Tok::AndAnd => "'&&'".into(),
            Tok::Bang => "'!'".into(),
            Tok::Semi => "';'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::Colon => "':'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Eof => "end of input".into(),
            Tok::Invalid { found, .. } => found.clone(),
        }
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

/// Describes a single character for error messages, naming typographic quotes.
pub fn describe_char(c: char) -> String {
    match c {
        '\u{201C}' | '\u{201D}' | '\u{2018}' | '\u{2019}' | '\u{201E}' | '\u{00AB}'
        | '\u{00BB}' => {
            format!("'{c}' (typographic quote U+{:04X})", c as u32)
        }
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

fn is_typographic_quote(c: char) -> bool {
    matches!(
        c,
        '\u{201C}' | '\u{201D}' | '\u{2018}' | '\u{2019}' | '\u{201E}' | '\u{00AB}' | '\u{00BB}'
    )
}

pub struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
    peeked: Option<(Tok, Span)>,
    /// Where an invalid token's error should point, when not at its start.
    invalid_at: Option<Span>,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            column: 1,
            peeked: None,
            invalid_at: None,
        }
    }

    pub fn peek(&mut self) -> &(Tok, Span) {
        if self.peeked.is_none() {
            let t = self.lex();
            self.peeked = Some(t);
        }
        match &self.peeked {
            Some(t) => t,
            // Unreachable: filled just above. Kept panic-free.
            None => &(Tok::Eof, Span { line: 0, column: 0 }),
        }
    }

    pub fn next_tok(&mut self) -> (Tok, Span) {
        match self.peeked.take() {
            Some(t) => t,
            None => self.lex(),
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn here(&self) -> Span {
        Span {
            line: self.line,
            column: self.column,
        }
    }

    /// Skips whitespace and comments. Returns an invalid token for an
    /// unterminated block comment.
    fn skip_trivia(&mut self) -> Option<(Tok, Span)> {
        loop {
            match self.chars.peek().copied() {
                Some(c) if c.is_whitespace() || c == '\u{FEFF}' => {
                    self.bump();
                }
                Some('/') => {
                    let mut ahead = self.chars.clone();
                    ahead.next();
                    match ahead.next() {
                        Some('/') => {
                            while let Some(c) = self.chars.peek().copied() {
                                if c == '\n' {
                                    break;
                                }
                                self.bump();
                            }
                        }
                        Some('*') => {
                            let start = self.here();
                            self.bump();
                            self.bump();
                            let mut closed = false;
                            while let Some(c) = self.bump() {
                                if c == '*' && self.chars.peek() == Some(&'/') {
                                    self.bump();
                                    closed = true;
                                    break;
                                }
                            }
                            if !closed {
                                return Some((
                                    Tok::Invalid {
                                        expected: Some("'*/' to close the comment".into()),
                                        found: "end of input".into(),
                                    },
                                    start,
                                ));
                            }
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    fn lex(&mut self) -> (Tok, Span) {
        if let Some(bad) = self.skip_trivia() {
            return bad;
        }
        let start = self.here();
        let Some(c) = self.bump() else {
            return (Tok::Eof, start);
        };
        let next = self.chars.peek().copied();
        let tok = match c {
            '=' => match next {
                Some('=') => {
                    self.bump();
                    Tok::EqEq
                }
                Some('>') => {
                    self.bump();
                    Tok::Arrow
                }
                _ => Tok::Assign,
            },
            '!' => {
                if next == Some('=') {
                    self.bump();
                    Tok::NotEq
                } else {
                    Tok::Bang
                }
            }
            '<' => {
                if next == Some('=') {
                    self.bump();
                    Tok::Le
                } else {
                    Tok::Lt
                }
            }
            '>' => {
                if next == Some('=') {
                    self.bump();
                    Tok::Ge
                } else {
                    Tok::Gt
                }
            }
            '&' => {
                if next == Some('&') {
                    self.bump();
                    Tok::AndAnd
                } else {
                    Tok::Invalid {
                        expected: Some("'&&'".into()),
                        found: "'&'".into(),
                    }
                }
            }
            ';' => Tok::Semi,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            ':' => Tok::Colon,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '"' => self.string(),
            '-' if next.is_some_and(|d| d.is_ascii_digit()) => self.number(c),
            c if c.is_ascii_digit() => self.number(c),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                s.push(c);
                while let Some(d) = self.chars.peek().copied() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        s.push(d);
                        self.bump();
                    } else {
                        break;
                    }
                }
                Tok::Ident(s)
            }
            c if is_typographic_quote(c) => Tok::Invalid {
                expected: Some("'\"' (ASCII double quote)".into()),
                found: describe_char(c),
            },
            c => Tok::Invalid {
                expected: None,
                found: describe_char(c),
            },
        };
        match self.invalid_at.take() {
            Some(at) => (tok, at),
            None => (tok, start),
        }
    }

    fn number(&mut self, first: char) -> Tok {
        let mut s = String::new();
        s.push(first);
        let hex = first == '0' && matches!(self.chars.peek(), Some('x') | Some('X'));
        if hex {
            self.bump();
            s.clear();
            while let Some(d) = self.chars.peek().copied() {
                if d.is_ascii_hexdigit() {
                    s.push(d);
                    self.bump();
                } else {
                    break;
                }
            }
            return match i64::from_str_radix(&s, 16) {
                Ok(v) if !s.is_empty() => Tok::Int(v),
                _ => Tok::Invalid {
                    expected: Some("a hexadecimal integer that fits in 64 bits".into()),
                    found: format!("'0x{}'", truncate(&s)),
                },
            };
        }
        while let Some(d) = self.chars.peek().copied() {
            if d.is_ascii_digit() {
                s.push(d);
                self.bump();
            } else {
                break;
            }
        }
        match s.parse::<i64>() {
            Ok(v) => Tok::Int(v),
            Err(_) => Tok::Invalid {
                expected: Some("an integer that fits in 64 bits".into()),
                found: format!("'{}'", truncate(&s)),
            },
        }
    }

    /// Lexes a string after its opening `"`. Strings may not span lines; the
    /// escapes are `\"`, `\\`, `\/`, `\n`, `\r`, `\t`.
    fn string(&mut self) -> Tok {
        let mut s = String::new();
        // Position of the first typographic quote inside the string, to point
        // at the real culprit (`"11”` followed by a newline).
        let mut smart: Option<(Span, char)> = None;
        loop {
            let pos = self.here();
            let Some(c) = self.chars.peek().copied() else {
                return self.unterminated(smart, "end of input");
            };
            match c {
                '"' => {
                    self.bump();
                    return Tok::Str(s);
                }
                '\n' | '\r' => {
                    return self.unterminated(smart, "end of line");
                }
                '\\' => {
                    self.bump();
                    let esc = self.chars.peek().copied();
                    let out = match esc {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        other => {
                            return Tok::Invalid {
                                expected: Some(
                                    "an escape sequence (\\\" \\\\ \\/ \\n \\r \\t)".into(),
                                ),
                                found: {
                                    self.invalid_at = Some(pos);
                                    match other {
                                        Some(o) => format!("'\\{o}'"),
                                        None => "end of input".into(),
                                    }
                                },
                            };
                        }
                    };
                    self.bump();
                    s.push(out);
                }
                c => {
                    if smart.is_none() && is_typographic_quote(c) {
                        smart = Some((pos, c));
                    }
                    self.bump();
                    s.push(c);
                }
            }
        }
    }

    fn unterminated(&mut self, smart: Option<(Span, char)>, at: &str) -> Tok {
        match smart {
            Some((pos, c)) => {
                self.invalid_at = Some(pos);
                Tok::Invalid {
                    expected: Some("'\"' to close the string".into()),
                    found: describe_char(c),
                }
            }
            None => {
                self.invalid_at = Some(self.here());
                Tok::Invalid {
                    expected: Some("'\"' to close the string".into()),
                    found: at.to_string(),
                }
            }
        }
    }
}
