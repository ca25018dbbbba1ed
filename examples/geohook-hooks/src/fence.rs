//! Hook definitions and the detect and command vocabularies.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use geohook_db::{Area, Fields, Glob, Object};

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};

/// How a fence compares an object with its area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceKind {
    /// `NEARBY key FENCE POINT lat lon meters`: the object is within `meters` of the point.
    Nearby,
    /// `WITHIN key FENCE area`: the object lies completely inside the area.
    Within,
    /// `INTERSECTS key FENCE area`: the object shares a point with the area.
    Intersects,
}

impl FenceKind {
    /// The command word.
    pub fn as_str(self) -> &'static str {
        match self {
            FenceKind::Nearby => "NEARBY",
            FenceKind::Within => "WITHIN",
            FenceKind::Intersects => "INTERSECTS",
        }
    }

    pub(crate) fn matches(self, object: &Object, area: &Area) -> bool {
        match self {
            FenceKind::Within => object.within(area),
            // A NEARBY fence's area is a circle, and "within the radius" means touching the circle.
            FenceKind::Nearby | FenceKind::Intersects => object.intersects(area),
        }
    }
}

impl FromStr for FenceKind {
    type Err = ();

    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "nearby" => Ok(FenceKind::Nearby),
            "within" => Ok(FenceKind::Within),
            "intersects" => Ok(FenceKind::Intersects),
            _ => Err(()),
        }
    }
}

/// One detect type of a `set` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detect {
    /// The object left the area with this write.
    Exit,
    /// The object is outside the area, before and after.
    Outside,
    /// The object entered the area with this write.
    Enter,
    /// The object is inside the area, before and after.
    Inside,
    /// The object jumped over the area: neither end is inside, but the straight path between them
    /// crosses it.
    Cross,
}

impl Detect {
    /// Every detect type.
    pub const ALL: [Detect; 5] = [
        Detect::Inside,
        Detect::Outside,
        Detect::Enter,
        Detect::Exit,
        Detect::Cross,
    ];

    /// The word as written in DETECT and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Detect::Inside => "inside",
            Detect::Outside => "outside",
            Detect::Enter => "enter",
            Detect::Exit => "exit",
            Detect::Cross => "cross",
        }
    }

    /// Tile38 sorts the messages of one write by this weight: exit, outside, enter, inside.
    pub(crate) fn weight(self) -> u8 {
        match self {
            Detect::Exit => 0,
            Detect::Outside | Detect::Cross => 1,
            Detect::Enter => 2,
            Detect::Inside => 3,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What a hook wants to hear about: a detect set and a command set, each "all" when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Filter {
    detect: u8,
    commands: u8,
    distance: bool,
    /// Whether a roam fence reports: only without DETECT, since Tile38 accepts no `roam` word
    /// there. It is kept apart from [`Detect`] because a roam fence reports nothing else.
    roam: bool,
}

/// A command an event can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// An object was set (SET, and anything else that moves or creates it).
    Set,
    /// An object was deleted or expired.
    Del,
    /// The whole collection was dropped.
    Drop,
    /// Fields of an object were changed by FSET; the object did not move, so
    /// it is `inside` (or `outside`) of each fence, never entering or leaving.
    Fset,
}

impl CommandKind {
    /// The word as written in COMMANDS and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Set => "set",
            CommandKind::Del => "del",
            CommandKind::Drop => "drop",
            CommandKind::Fset => "fset",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            detect: 0x1f,
            commands: 0x0f,
            distance: false,
            roam: true,
        }
    }
}

impl Filter {
    /// Parses `DETECT` and `COMMANDS` comma lists; `None` means every value, as in Tile38.
    ///
    /// # Errors
    /// [`Error::InvalidHook`] for an unknown word (the hook name is filled in by the caller).
    pub fn parse(detect: Option<&str>, commands: Option<&str>) -> Result<Self> {
        let mut f = Filter::default();
        let bad = |what: &str| Error::InvalidHook {
            name: String::new(),
            reason: format!("invalid argument '{what}'"),
        };
        if let Some(list) = detect {
            f.detect = 0;
            // Tile38 refuses `roam` in DETECT, so a roam fence with DETECT
            // reports nothing, as there.
            f.roam = false;
            for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                let d = Detect::ALL
                    .into_iter()
                    .find(|d| d.as_str().eq_ignore_ascii_case(w))
                    .ok_or_else(|| bad(w))?;
                f.detect |= d.bit();
            }
        }
        if let Some(list) = commands {
            f.commands = 0;
            for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                let c = [
                    CommandKind::Set,
                    CommandKind::Del,
                    CommandKind::Drop,
                    CommandKind::Fset,
                ]
                .into_iter()
                .find(|c| c.as_str().eq_ignore_ascii_case(w))
                .ok_or_else(|| bad(w))?;
                f.commands |= c.bit();
            }
        }
        Ok(f)
    }

    /// Whether `detect` is delivered.
    pub fn detects(&self, detect: Detect) -> bool {
        self.detect & detect.bit() != 0
    }

    /// Whether a roam fence reports its `roam` events (only when DETECT was not given).
    pub fn detects_roam(&self) -> bool {
        self.roam
    }

    /// The same filter, with `DISTANCE` (a fence's `set` and `fset` events then carry
    /// `"distance"`, the object's distance in meters from the centre of the fence's area, as in
    /// Tile38) on or off.
    pub fn with_distance(mut self, on: bool) -> Self {
        self.distance = on;
        self
    }

    /// Whether events carry `"distance"`.
    pub fn distance(&self) -> bool {
        self.distance
    }

    /// Whether events of `command` are delivered.
    pub fn allows(&self, command: CommandKind) -> bool {
        self.commands & command.bit() != 0
    }
}

/// Where a fence's events go. Hooks, channels and live fences are one kind of thing with three
/// destinations, so that all three share one matcher, one fence index and one event format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Delivery {
    /// SETHOOK: queued and sent to the hook's endpoints.
    #[default]
    Endpoints,
    /// SETCHAN: published on the server's own pub/sub, on the channel named after the hook, to
    /// the connections subscribed to it ([`crate::PubSub`]).
    Channel,
    /// A live fence (`NEARBY … FENCE` sent on a plain connection): sent to that one connection,
    /// known by this id, for as long as it stays open. Live fences are nameless and never listed.
    Live(u64),
}

/// A test of an object and its fields that a fence applies before it reports the object: the
/// server's WHERE, WHEREIN and WHERE-expression filters, which this crate does not parse.
pub trait ObjectTest: Send + Sync + fmt::Debug {
    /// Whether the object `id`, with these fields, passes.
    fn accepts(&self, id: &str, object: &Object, fields: &Fields) -> bool;
}

/// Where a roam fence looks for neighbours: the objects of the database near a position. The
/// server supplies it with each change, so that this crate reads the database without depending
/// on the server.
pub trait Neighbors {
    /// Calls `f(id, object, meters)` for every live object of collection `key` whose distance from
    /// `object` is at most `meters`, the object itself included (the caller skips it).
    fn near(&self, key: &str, object: &Object, meters: f64, f: &mut dyn FnMut(&str, &Object, f64));

    /// Calls `f(id, object)` for every live object of collection `key` whose id matches the glob
    /// `pattern`, in id order: what `ROAM … SCAN pattern` lists with each neighbour. Without a
    /// database there is nothing to list.
    fn scan(&self, key: &str, pattern: &str, f: &mut dyn FnMut(&str, &Object)) {
        let _ = (key, pattern, f);
    }
}

/// No database: roam fences find no neighbours.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNeighbors;

impl Neighbors for NoNeighbors {
    fn near(&self, _: &str, _: &Object, _: f64, _: &mut dyn FnMut(&str, &Object, f64)) {}
}

/// `ROAM key pattern meters`: the fence follows each object of the watched key and reports the
/// objects of `key` whose id matches `pattern` that come within `meters` of it (`nearby`) and,
/// on a later write, those that are no longer within reach (`faraway`).
#[derive(Debug, Clone, PartialEq)]
pub struct Roam {
    /// The collection searched for neighbours.
    pub key: String,
    /// The glob that a neighbour's id must match (`*` for any).
    pub pattern: String,
    /// The reach in meters.
    pub meters: f64,
    /// `NODWELL`: a neighbour that was already near before the write is not reported again.
    pub nodwell: bool,
    /// `SCAN pattern`: each `nearby` or `faraway` member also lists, under `"scan"`, the
    /// neighbour itself (`"self":true`) and the objects of `key` whose id is the neighbour's id
    /// followed by this glob (Tile38's `ROAM key pattern meters SCAN pattern`).
    pub scan: Option<String>,
}

/// What a fence's `set` and `fset` events say about the object: the search output the fence
/// was written with (Tile38 writes its events through the same scan writer as a search).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FenceOutput {
    /// `OBJECTS` (the default): `"object"`, then `"fields"`.
    #[default]
    Objects,
    /// `IDS`: the id alone, no object and no fields.
    Ids,
    /// `POINTS`: `"point":{"lat":…,"lon":…}`, then `"fields"`.
    Points,
    /// `BOUNDS`: `"bounds":{"sw":…,"ne":…}`, then `"fields"`.
    Bounds,
    /// `HASHES precision`: `"hash"`, the geohash of the object's centre, then `"fields"`.
    Hashes(u8),
    /// `COUNT`: a search output with nothing to say per object, so the fence sends no `set` or
    /// `fset` event at all, only `del` and `drop` (what Tile38's scan writer leaves of them).
    Count,
}

/// The search options a fence takes besides its area, as Tile38 applies them to events.
#[derive(Debug, Clone, Default)]
pub struct FenceOptions {
    /// `MATCH` globs: an event (other than `drop`) is sent only for an id matching one of them.
    pub matches: Vec<String>,
    /// WHERE and WHEREIN filters: an object that fails them counts as outside the fence.
    pub test: Option<Arc<dyn ObjectTest>>,
    /// `NOFIELDS`: events carry no fields, and `fset` sends nothing.
    pub nofields: bool,
    /// A roam fence (its [`HookDef::area`] is then unused).
    pub roam: Option<Roam>,
    /// `IDS`, `POINTS`, `BOUNDS`, `HASHES precision`, `COUNT` or `OBJECTS`.
    pub output: FenceOutput,
    /// `CLIPBY` cut the area. A cut may leave nothing of it; such a fence is valid, as in Tile38,
    /// and matches no object.
    pub clipped: bool,
}

impl PartialEq for FenceOptions {
    fn eq(&self, other: &Self) -> bool {
        // Two tests are the same when they print the same: both come from the server's parse of
        // the same arguments, and its filters print every value they hold.
        let test = |t: &Option<Arc<dyn ObjectTest>>| t.as_ref().map(|t| format!("{t:?}"));
        self.matches == other.matches
            && self.nofields == other.nofields
            && self.roam == other.roam
            && self.output == other.output
            && self.clipped == other.clipped
            && test(&self.test) == test(&other.test)
    }
}

impl FenceOptions {
    /// Whether the id passes MATCH (every id does without it).
    pub fn id_matches(&self, id: &str) -> bool {
        self.matches.is_empty()
            || self
                .matches
                .iter()
                .any(|p| p == "*" || Glob::new(p).is_match(id))
    }

    /// Whether the object passes WHERE and WHEREIN.
    pub fn accepts(&self, id: &str, object: &Object, fields: &Fields) -> bool {
        self.test
            .as_ref()
            .is_none_or(|t| t.accepts(id, object, fields))
    }

    /// Whether any option filters events, so that matching must read them.
    pub fn filters(&self) -> bool {
        !self.matches.is_empty() || self.test.is_some() || self.nofields || self.roam.is_some()
    }
}

/// A hook as SETHOOK defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct HookDef {
    /// The hook's name, unique among hooks.
    pub name: String,
    /// Endpoints tried in order for each message (failover); empty for a channel or a live fence.
    pub endpoints: Vec<Endpoint>,
    /// Where the events go: the endpoints, a channel, or a live connection.
    pub delivery: Delivery,
    /// `META name value` pairs, in the order given; copied into every event.
    pub meta: Vec<(String, String)>,
    /// `EX seconds`: the hook deletes itself this long after it is set.
    pub ex: Option<f64>,
    /// NEARBY, WITHIN or INTERSECTS.
    pub kind: FenceKind,
    /// The collection watched.
    pub key: String,
    /// DETECT and COMMANDS.
    pub filter: Filter,
    /// The fence's area (a circle for NEARBY); unused by a roam fence.
    pub area: Area,
    /// MATCH, WHERE, NOFIELDS and ROAM.
    pub options: FenceOptions,
    /// The search part of the command as the client wrote it, from the NEARBY/WITHIN/INTERSECTS word to
    /// the end (`["NEARBY","fleet","FENCE","POINT","33","-112","500"]`): what HOOKS shows and what the
    /// AOF replays.
    pub args: Vec<String>,
}

impl HookDef {
    /// Checks the definition.
    ///
    /// # Errors
    /// [`Error::InvalidHook`] for an empty name (a hook or channel) or key, no endpoint (a hook),
    /// endpoints on a channel or live fence, a bad EX, or an area with no position (a string
    /// object).
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::InvalidHook {
                name: self.name.clone(),
                reason: reason.into(),
            })
        };
        if self.name.is_empty() && !matches!(self.delivery, Delivery::Live(_)) {
            return bad("empty name");
        }
        if self.key.is_empty() {
            return bad("empty key");
        }
        match self.delivery {
            Delivery::Endpoints if self.endpoints.is_empty() => return bad("no endpoint"),
            Delivery::Channel | Delivery::Live(_) if !self.endpoints.is_empty() => {
                return bad("a channel or live fence has no endpoints")
            }
            _ => {}
        }
        if self.ex.is_some_and(|ex| !ex.is_finite() || ex <= 0.0) {
            return bad("EX must be a positive number of seconds");
        }
        if let Some(roam) = &self.options.roam {
            if self.kind != FenceKind::Nearby {
                return bad("ROAM is a NEARBY fence");
            }
            if roam.key.is_empty() || roam.pattern.is_empty() {
                return bad("ROAM needs a key and a pattern");
            }
            if !roam.meters.is_finite() || roam.meters < 0.0 {
                return bad("ROAM meters must be a non-negative number");
            }
            return Ok(());
        }
        if self.area.bounds().is_none() && !self.options.clipped {
            return bad("the fence area has no position");
        }
        if self.kind == FenceKind::Nearby
            && !matches!(self.area, Area::Circle { .. } | Area::Point(_))
        {
            return bad("a NEARBY fence needs POINT lat lon meters");
        }
        Ok(())
    }

    /// The endpoints as one comma-separated string, as SETHOOK takes them.
    pub fn endpoint_list(&self) -> String {
        self.endpoints
            .iter()
            .map(Endpoint::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether this is a channel (SETCHAN).
    pub fn is_channel(&self) -> bool {
        self.delivery == Delivery::Channel
    }

    /// The full command that recreates this hook, for the append-only file: `SETHOOK name endpoints
    /// [META k v …] [EX remaining] args…` (`SETCHAN name …` for a channel). `remaining_ex` is the
    /// time left for a hook with EX (an AOF rewrite writes what remains, as Tile38's AOFSHRINK
    /// does).
    pub fn to_command(&self, remaining_ex: Option<f64>) -> Vec<String> {
        let mut out = if self.is_channel() {
            vec!["SETCHAN".to_owned(), self.name.clone()]
        } else {
            vec![
                "SETHOOK".to_owned(),
                self.name.clone(),
                self.endpoint_list(),
            ]
        };
        for (k, v) in &self.meta {
            out.extend(["META".to_owned(), k.clone(), v.clone()]);
        }
        if let Some(ex) = remaining_ex {
            out.extend(["EX".to_owned(), format!("{ex}")]);
        }
        out.extend(self.args.iter().cloned());
        out
    }
}

impl fmt::Display for HookDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_command(self.ex).join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_default_to_everything() {
        let all = Filter::default();
        assert!(Detect::ALL.iter().all(|d| all.detects(*d)));
        assert!(all.allows(CommandKind::Drop));
        let f = Filter::parse(Some("enter,EXIT"), Some("del")).unwrap();
        assert!(f.detects(Detect::Enter) && f.detects(Detect::Exit) && !f.detects(Detect::Inside));
        assert!(f.allows(CommandKind::Del) && !f.allows(CommandKind::Set));
        // Tile38 refuses `roam` in DETECT; a roam fence speaks only without DETECT.
        assert!(Filter::parse(Some("roam"), None).is_err());
        assert!(all.detects_roam() && !f.detects_roam());
        assert!(Filter::parse(None, Some("fset2")).is_err());
        let f = Filter::parse(None, Some("fset")).unwrap();
        assert!(f.allows(CommandKind::Fset) && !f.allows(CommandKind::Set));
        assert!(Filter::default().allows(CommandKind::Fset));
    }
}
