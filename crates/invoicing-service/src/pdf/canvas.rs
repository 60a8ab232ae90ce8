//! Drawing on a page in millimetres from the bottom-left corner, with text measured in the
//! embedded font (for right-aligned amounts and descriptions cut to their column), and the
//! two fonts every invoice uses.

use std::collections::BTreeSet;

use printpdf::{
    Color, FontId, Greyscale, Line, LinePoint, Mm, Op, ParsedFont, PdfFontHandle, Point, Pt,
    TextItem,
};

/// The regular and bold faces, parsed once (for measuring) and shared by every render; each
/// document embeds a subset of them holding only the characters it prints.
#[derive(Debug, Clone)]
pub struct Fonts {
    pub(super) regular: ParsedFont,
    pub(super) bold: ParsedFont,
    regular_bytes: std::sync::Arc<Vec<u8>>,
    bold_bytes: std::sync::Arc<Vec<u8>>,
}

/// A font that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("font {0}: not a TrueType or OpenType font printpdf can read")]
pub struct BadFont(pub String);

const DEJAVU: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
const DEJAVU_BOLD: &[u8] = include_bytes!("../../fonts/DejaVuSans-Bold.ttf");

fn parse(name: &str, bytes: &[u8]) -> Result<ParsedFont, BadFont> {
    ParsedFont::from_bytes(bytes, 0, &mut Vec::new()).ok_or_else(|| BadFont(name.to_string()))
}

impl Fonts {
    /// DejaVu Sans, committed with its licence (`fonts/`): Latin, Greek, Cyrillic.
    pub fn embedded() -> Fonts {
        Fonts {
            regular: parse("DejaVuSans.ttf", DEJAVU).expect("the embedded font parses"),
            bold: parse("DejaVuSans-Bold.ttf", DEJAVU_BOLD).expect("the embedded font parses"),
            regular_bytes: std::sync::Arc::new(DEJAVU.to_vec()),
            bold_bytes: std::sync::Arc::new(DEJAVU_BOLD.to_vec()),
        }
    }

    /// One font for everything (a CJK font, say): bold text is set in it too.
    pub fn from_file(path: &str) -> Result<Fonts, BadFont> {
        let bytes = std::fs::read(path).map_err(|_| BadFont(path.to_string()))?;
        let font = parse(path, &bytes)?;
        // A font it cannot subset would fail every render: find out now.
        subset(&font, &bytes, &['A'].into_iter().collect()).ok_or_else(|| BadFont(path.into()))?;
        let bytes = std::sync::Arc::new(bytes);
        Ok(Fonts {
            regular: font.clone(),
            bold: font,
            regular_bytes: bytes.clone(),
            bold_bytes: bytes,
        })
    }

    /// The two faces cut down to `regular` and `bold` characters, for embedding.
    pub(super) fn subsets(
        &self,
        regular: &BTreeSet<char>,
        bold: &BTreeSet<char>,
    ) -> (ParsedFont, ParsedFont) {
        // Subsetting a font that parsed (and was test-subset at start-up) does not fail; if
        // it ever did, embedding the whole font is still a correct PDF, only a larger one.
        let cut = |font: &ParsedFont, bytes: &[u8], chars: &BTreeSet<char>| {
            subset(font, bytes, chars).unwrap_or_else(|| font.clone())
        };
        (
            cut(&self.regular, &self.regular_bytes, regular),
            cut(&self.bold, &self.bold_bytes, bold),
        )
    }
}

/// `font` (read from `bytes`) with only the glyphs of `chars` (and .notdef), renumbered,
/// with a Unicode cmap of its own.
fn subset(font: &ParsedFont, bytes: &[u8], chars: &BTreeSet<char>) -> Option<ParsedFont> {
    use allsorts::binary::read::ReadScope;
    use allsorts::font_data::FontData;
    use allsorts::subset::{CmapTarget, SubsetProfile};
    let mut glyphs: Vec<u16> = chars
        .iter()
        .filter_map(|c| font.lookup_glyph_index(*c as u32))
        .filter(|g| *g != 0)
        .collect();
    glyphs.sort_unstable();
    glyphs.dedup();
    glyphs.insert(0, 0);
    let file = ReadScope::new(bytes).read::<FontData<'_>>().ok()?;
    let provider = file.table_provider(0).ok()?;
    let cut = allsorts::subset::subset(
        &provider,
        &glyphs,
        &SubsetProfile::Minimal,
        CmapTarget::Unicode,
    )
    .ok()?;
    parse("subset", &cut).ok()
}

/// The resource names of the two faces: fixed, because printpdf's own are random and the
/// bytes of a re-render must not change (the first six letters are the subset tag).
pub(super) fn regular_id() -> FontId {
    FontId("INVREG".into())
}

pub(super) fn bold_id() -> FontId {
    FontId("INVBLD".into())
}

const PT_PER_MM: f32 = 72.0 / 25.4;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Face {
    Regular,
    Bold,
}

/// One page's drawing operations, and the characters they print in each face.
pub(super) struct Canvas<'f> {
    fonts: &'f Fonts,
    pub(super) ops: Vec<Op>,
    pub(super) regular_chars: BTreeSet<char>,
    pub(super) bold_chars: BTreeSet<char>,
}

impl<'f> Canvas<'f> {
    pub(super) fn new(fonts: &'f Fonts) -> Self {
        Canvas {
            fonts,
            ops: Vec::with_capacity(512),
            regular_chars: BTreeSet::new(),
            bold_chars: BTreeSet::new(),
        }
    }

    fn font(&self, face: Face) -> &ParsedFont {
        match face {
            Face::Regular => &self.fonts.regular,
            Face::Bold => &self.fonts.bold,
        }
    }

    /// The width of `s` in millimetres at `size` points.
    pub(super) fn width(&self, s: &str, size: f32, face: Face) -> f32 {
        let font = self.font(face);
        let em = f32::from(font.units_per_em.max(1));
        let units: u32 = s
            .chars()
            .map(|c| {
                font.lookup_glyph_index(c as u32)
                    .and_then(|g| font.get_glyph_width(g))
                    .map_or(u32::from(font.units_per_em) / 2, u32::from)
            })
            .sum();
        units as f32 / em * size / PT_PER_MM
    }

    /// `s` cut (with an ellipsis) to fit `max` millimetres.
    pub(super) fn fit(&self, s: &str, max: f32, size: f32, face: Face) -> String {
        if self.width(s, size, face) <= max {
            return s.to_string();
        }
        let mut out: String = s.to_string();
        while !out.is_empty() && self.width(&format!("{out}…"), size, face) > max {
            out.pop();
        }
        format!("{}…", out.trim_end())
    }

    /// `s` broken into lines of at most `max` millimetres, at spaces.
    pub(super) fn wrap(&self, s: &str, max: f32, size: f32, face: Face) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in s.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if !line.is_empty() && self.width(&candidate, size, face) > max {
                lines.push(std::mem::replace(&mut line, word.to_string()));
            } else {
                line = candidate;
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// Text with its left edge at `x`, baseline at `y`.
    pub(super) fn text(&mut self, x: f32, y: f32, size: f32, face: Face, s: &str) {
        if s.is_empty() {
            return;
        }
        let (font, used) = match face {
            Face::Regular => (regular_id(), &mut self.regular_chars),
            Face::Bold => (bold_id(), &mut self.bold_chars),
        };
        used.extend(s.chars());
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFont {
                font: PdfFontHandle::External(font),
                size: Pt(size),
            },
            Op::SetTextCursor {
                pos: Point {
                    x: Mm(x).into(),
                    y: Mm(y).into(),
                },
            },
            Op::ShowText {
                items: vec![TextItem::Text(s.to_string())],
            },
            Op::EndTextSection,
        ]);
    }

    /// Text with its right edge at `x`.
    pub(super) fn text_right(&mut self, x: f32, y: f32, size: f32, face: Face, s: &str) {
        let w = self.width(s, size, face);
        self.text(x - w, y, size, face, s);
    }

    /// A horizontal rule from `x1` to `x2` at `y`.
    pub(super) fn rule(&mut self, x1: f32, x2: f32, y: f32, thickness: f32) {
        let point = |x: f32| LinePoint {
            p: Point {
                x: Mm(x).into(),
                y: Mm(y).into(),
            },
            bezier: false,
        };
        self.ops.extend([
            Op::SetOutlineColor {
                col: Color::Greyscale(Greyscale {
                    percent: 0.55,
                    icc_profile: None,
                }),
            },
            Op::SetOutlineThickness { pt: Pt(thickness) },
            Op::DrawLine {
                line: Line {
                    points: vec![point(x1), point(x2)],
                    is_closed: false,
                },
            },
        ]);
    }
}
