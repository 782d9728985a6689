//! Tokens of the assembly text (logos), adapted to lalrpop's external-lexer interface.

use logos::Logos;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LexError;

#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(skip r"[ \t\r]+")]
#[logos(skip(r";[^\n]*", allow_greedy = true))]
#[logos(error = LexError)]
pub enum Tok<'input> {
    #[token("\n")]
    Newline,
    #[token(",")]
    Comma,
    #[token("=")]
    Eq,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[regex(r"%[0-9]+", |lex| lex.slice()[1..].parse::<u32>().ok())]
    Reg(u32),
    #[regex(r"-?[0-9]+", |lex| lex.slice().parse::<i64>().ok(), priority = 3)]
    Int(i64),
    #[regex(r"-?[0-9]+\.[0-9]+([eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+|-?inf|NaN", |lex| lex.slice().parse::<f64>().ok())]
    Float(f64),
    #[regex(r#""([^"\\\n]|\\.)*""#, |lex| unescape(lex.slice()))]
    Str(String),
    #[regex(r"\.?[A-Za-z_][A-Za-z0-9_]*")]
    Ident(&'input str),
}

fn unescape(s: &str) -> Option<String> {
    let inner = &s[1..s.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'u' => {
                    // Rust's `{:?}` writes `\u{XXXX}`.
                    if chars.next()? != '{' {
                        return None;
                    }
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                '0' => out.push('\0'),
                'r' => out.push('\r'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

pub type Spanned<'input> = Result<(usize, Tok<'input>, usize), LexError>;

/// The token stream, always ending with a newline so the last statement is terminated.
pub fn tokens(input: &str) -> impl Iterator<Item = Spanned<'_>> {
    let end = input.len();
    Tok::lexer(input)
        .spanned()
        .map(|(t, span)| t.map(|t| (span.start, t, span.end)))
        .chain(std::iter::once(Ok((end, Tok::Newline, end))))
}
