//! Fields of one object: `FSET key id [XX] name value [name value …]` and
//! `FGET key id name`, and `FEXISTS key id name`.
//!
//! FSET is logged as `fset key id [xx] name value …`, with each value in its
//! text form; only an FSET that changed a value is logged.

use geohook_db::{Database, FieldValue};

use crate::cmd::args::{self, lower, text};
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::spec::Cmd;
use crate::state::{Core, Record, Writer};
use geohook_resp::Reply;

/// `FSET key id [XX] name value …`.
///
/// # Errors
///
/// Arity (names without values), a bad argument, the missing key or id, the
/// log's failure.
pub(crate) fn fset(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let (key, id) = (text(&args[1])?, text(&args[2])?);
    let xx = lower(&args[3]) == "xx";
    let rest = &args[3 + usize::from(xx)..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(CmdError::Arity("fset"));
    }
    let mut fields: Vec<(&str, FieldValue)> = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks(2) {
        fields.push((text(&pair[0])?, args::field_value(&pair[1])?));
    }
    let changed = core.db.fset(key, id, &fields, xx, ctx.now())?;
    if changed > 0 {
        let texts: Vec<_> = fields.iter().map(|(_, v)| v.text()).collect();
        let mut logged: Vec<&[u8]> = Vec::with_capacity(4 + rest.len());
        logged.extend([b"fset".as_slice(), key.as_bytes(), id.as_bytes()]);
        if xx {
            logged.push(b"xx");
        }
        for ((name, _), text) in fields.iter().zip(&texts) {
            logged.extend([name.as_bytes(), text.as_bytes()]);
        }
        core.commit(w, Record::new(Cmd::Fset, &logged, key, Some(id)))?;
    }
    Ok(ctx.ok_or_int(changed as i64))
}

/// `FGET key id name`.
///
/// # Errors
///
/// A bad argument, the missing key, id or field.
pub(crate) fn fget(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let v = db.fget(text(&args[1])?, text(&args[2])?, text(&args[3])?, ctx.now())?;
    Ok(if ctx.json {
        ctx.ok_json(&format!(",\"value\":{}", v.to_json()))
    } else {
        Reply::bulk(v.text().into_owned())
    })
}

/// `FEXISTS key id name`: whether the object has the field (a field set to
/// 0 or the empty string is not stored, so it does not exist). Tile38
/// answers RESP with a boolean, which RESP2 carries as the integer 1 or 0.
///
/// # Errors
///
/// A bad argument, the missing key or id.
pub(crate) fn fexists(db: &Database, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    let item = db.get(text(&args[1])?, text(&args[2])?, ctx.now())?;
    let exists = item.fields().get(text(&args[3])?).is_some();
    Ok(if ctx.json {
        ctx.ok_json(&format!(",\"exists\":{exists}"))
    } else {
        Reply::Int(i64::from(exists))
    })
}
