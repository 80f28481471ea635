use super::*;

/// Fields of `Raw` and its parts as found in the line.
#[derive(Default)]
struct Found<'a> {
    kind: Option<Option<&'a str>>,
    request_id: Option<Option<&'a str>>,
    session_id: Option<Option<&'a str>>,
    agent_id: Option<Option<&'a str>>,
    sidechain: Option<Option<bool>>,
    timestamp: Option<Option<&'a str>>,
    entrypoint: Option<Option<&'a str>>,
    cwd: Option<Option<&'a str>>,
    git_branch: Option<Option<&'a str>>,
    api_error: Option<Option<bool>>,
    /// `message`: present and an object.
    message: Option<bool>,
    msg_id: Option<Option<&'a str>>,
    model: Option<Option<&'a str>>,
    usage: Option<bool>,
    tokens: [Option<Option<u64>>; 4],
    cache_creation: Option<bool>,
    one_hour: Option<Option<u64>>,
    server_tools: Option<bool>,
    web_search: Option<Option<u64>>,
    speed: Option<Option<&'a str>>,
    geo: Option<Option<&'a str>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Top,
    Message,
    Usage,
    CacheCreation,
    ServerTools,
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

/// serde_json's recursion limit is 128; stay well below it.
const MAX_DEPTH: usize = 100;

pub fn parse(line: &[u8]) -> Option<Line> {
    // Raw control characters (tabs and carriage returns too): serde's to judge.
    if has_control(line) {
        return None;
    }
    let mut p = P { b: line, i: 0 };
    let mut f = Found::default();
    p.object(Level::Top, &mut f, 1)?;
    if p.i != line.len() {
        return None;
    }
    // What parse_with_serde does with a deserialized `Raw`.
    if f.kind.flatten() != Some("assistant") || f.api_error.flatten() == Some(true) {
        return Some(Line::Other);
    }
    if f.message != Some(true) || f.usage != Some(true) {
        return Some(Line::Other);
    }
    let model = f.model.flatten().unwrap_or("");
    if model == "<synthetic>" {
        return Some(Line::Other);
    }
    if model.is_empty() {
        return None;
    }
    let t = |i: usize| f.tokens[i].flatten().unwrap_or(0);
    let usage = usage_from_api(
        t(0),
        t(1),
        t(2),
        if f.cache_creation == Some(true) { f.one_hour.flatten() } else { None },
        t(3),
        if f.server_tools == Some(true) { f.web_search.flatten() } else { None }.unwrap_or(0),
    );
    if !usage.is_plausible() {
        // Malformed: serde's reading says so the same way.
        return None;
    }
    let request_id = f.request_id.flatten();
    let agent_id = f.agent_id.flatten();
    Some(Line::Usage(Box::new(UsageEvent {
        key: key_of(f.msg_id.flatten(), request_id, line),
        request_id: request_id.filter(|r| !r.is_empty()).map(str::to_string),
        session_id: f.session_id.flatten().map(str::to_string),
        agent_id: if f.sidechain.flatten() == Some(true) || agent_id.is_some() {
            agent_id.map(str::to_string)
        } else {
            None
        },
        model: model.to_string(),
        requested_model: None,
        usage,
        mods: Modifiers { fast: f.speed.flatten() == Some("fast"), geo: f.geo.flatten().map(str::to_string) },
        timestamp: f.timestamp.flatten().map(str::to_string),
        entrypoint: f.entrypoint.flatten().map(str::to_string),
        cwd: f.cwd.flatten().map(str::to_string),
        git_branch: f.git_branch.flatten().filter(|b| !b.is_empty()).map(str::to_string),
        estimated: false,
    })))
}

/// Any byte below 0x20, eight at a time.
fn has_control(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        if x.wrapping_sub(0x2020_2020_2020_2020) & !x & 0x8080_8080_8080_8080 != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c < 0x20)
}

/// Set a field once; a second time means a duplicate key, which serde refuses.
fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

impl<'a> P<'a> {
    fn ws(&mut self) {
        while let Some(b' ') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// A string's raw contents (between the quotes) and whether it has escapes; escapes are
    /// checked as serde checks them.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let k = memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            self.i += k;
            if self.b[self.i] == b'"' {
                let s = &self.b[start..self.i];
                self.i += 1;
                return Some((s, escaped));
            }
            escaped = true;
            match *self.b.get(self.i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                b'u' => {
                    let hex = self.b.get(self.i + 2..self.i + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.i += 6;
                }
                _ => return None,
            }
        }
    }

    /// A string field serde reads as text: no escapes (serde would unescape), valid UTF-8.
    fn text(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'n' {
            return self.null().map(|_| None);
        }
        let (s, escaped) = self.string()?;
        if escaped {
            return None;
        }
        std::str::from_utf8(s).ok().map(Some)
    }

    fn null(&mut self) -> Option<()> {
        self.literal(b"null")
    }

    fn literal(&mut self, w: &[u8]) -> Option<()> {
        self.ws();
        if self.b.get(self.i..self.i + w.len())? != w {
            return None;
        }
        self.i += w.len();
        Some(())
    }

    fn boolean(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| Some(true)),
            b'f' => self.literal(b"false").map(|_| Some(false)),
            b'n' => self.null().map(|_| None),
            _ => None,
        }
    }

    /// A whole number that fits u64, or null.
    fn count(&mut self) -> Option<Option<u64>> {
        if self.peek()? == b'n' {
            return self.null().map(|_| None);
        }
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(d) = self.b.get(self.i).filter(|c| c.is_ascii_digit()) {
            v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        // A fraction or an exponent makes it a float: serde's to judge.
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(Some(v))
    }

    /// An object at one of the levels `Raw` reads, or null there.
    fn maybe_object(&mut self, level: Level, f: &mut Found<'a>, depth: usize) -> Option<bool> {
        match self.peek()? {
            b'n' => self.null().map(|_| false),
            b'{' => self.object(level, f, depth).map(|_| true),
            _ => None,
        }
    }

    fn object(&mut self, level: Level, f: &mut Found<'a>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let (key, escaped) = self.string()?;
            // serde reads these keys as text to match them against field names.
            if escaped || std::str::from_utf8(key).is_err() {
                return None;
            }
            self.eat(b':')?;
            self.field(level, key, f, depth)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn field(&mut self, level: Level, key: &[u8], f: &mut Found<'a>, depth: usize) -> Option<()> {
        match (level, key) {
            (Level::Top, b"type") => once(&mut f.kind, self.text()?),
            (Level::Top, b"message") => {
                let v = self.maybe_object(Level::Message, f, depth + 1)?;
                once(&mut f.message, v)
            }
            (Level::Top, b"requestId") => once(&mut f.request_id, self.text()?),
            (Level::Top, b"sessionId") => once(&mut f.session_id, self.text()?),
            (Level::Top, b"agentId") => once(&mut f.agent_id, self.text()?),
            (Level::Top, b"isSidechain") => once(&mut f.sidechain, self.boolean()?),
            (Level::Top, b"timestamp") => once(&mut f.timestamp, self.text()?),
            (Level::Top, b"entrypoint") => once(&mut f.entrypoint, self.text()?),
            (Level::Top, b"cwd") => once(&mut f.cwd, self.text()?),
            (Level::Top, b"gitBranch") => once(&mut f.git_branch, self.text()?),
            (Level::Top, b"isApiErrorMessage") => once(&mut f.api_error, self.boolean()?),
            (Level::Message, b"id") => once(&mut f.msg_id, self.text()?),
            (Level::Message, b"model") => once(&mut f.model, self.text()?),
            (Level::Message, b"usage") => {
                let v = self.maybe_object(Level::Usage, f, depth + 1)?;
                once(&mut f.usage, v)
            }
            (Level::Usage, b"input_tokens") => once(&mut f.tokens[0], self.count()?),
            (Level::Usage, b"output_tokens") => once(&mut f.tokens[1], self.count()?),
            (Level::Usage, b"cache_creation_input_tokens") => once(&mut f.tokens[2], self.count()?),
            (Level::Usage, b"cache_read_input_tokens") => once(&mut f.tokens[3], self.count()?),
            (Level::Usage, b"cache_creation") => {
                let v = self.maybe_object(Level::CacheCreation, f, depth + 1)?;
                once(&mut f.cache_creation, v)
            }
            (Level::Usage, b"server_tool_use") => {
                let v = self.maybe_object(Level::ServerTools, f, depth + 1)?;
                once(&mut f.server_tools, v)
            }
            (Level::Usage, b"speed") => once(&mut f.speed, self.text()?),
            (Level::Usage, b"inference_geo") => once(&mut f.geo, self.text()?),
            (Level::CacheCreation, b"ephemeral_1h_input_tokens") => once(&mut f.one_hour, self.count()?),
            (Level::ServerTools, b"web_search_requests") => once(&mut f.web_search, self.count()?),
            _ => self.value(depth + 1),
        }
    }

    /// Any JSON value, checked and skipped.
    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.eat(b':')?;
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.null(),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    fn number(&mut self) -> Option<()> {
        let b = self.b;
        let digits = |i: &mut usize| {
            let s = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - s
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let first = *b.get(i)?;
        let n = digits(&mut i);
        if n == 0 || (first == b'0' && n > 1) {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        self.i = i;
        Some(())
    }
}
