//! Deadlines: `EXPIRE key id seconds`, `PEXPIREAT key id ms` (the logged
//! form of both) and `PERSIST key id`.
//!
//! EXPIRE is logged as `pexpireat key id <absolute ms>`, so that a restart
//! does not restart the countdown.

use crate::cmd::args::{self, text};
use crate::cmd::ctx::{CmdError, Ctx};
use crate::cmd::spec::Cmd;
use crate::state::{Core, Record, Writer};
use geohook_resp::Reply;

/// `EXPIRE key id seconds` or `PEXPIREAT key id ms`.
///
/// # Errors
///
/// A bad argument; in JSON mode the missing key or id (RESP answers 0); the
/// log's failure.
pub(crate) fn expire(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    cmd: Cmd,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let (key, id) = (text(&args[1])?, text(&args[2])?);
    let at = if cmd == Cmd::Expire {
        args::ex_deadline(&args[3], ctx.now())?
    } else {
        args::int(&args[3])?
    };
    match core.db.expire(key, id, at, ctx.now()) {
        Ok(()) => {
            let mut ms = itoa::Buffer::new();
            let logged = [
                b"pexpireat".as_slice(),
                key.as_bytes(),
                id.as_bytes(),
                ms.format(at).as_bytes(),
            ];
            core.commit(w, Record::new(Cmd::Pexpireat, &logged, key, Some(id)))?;
            Ok(ctx.ok_or_int(1))
        }
        Err(geohook_db::Error::KeyNotFound { .. } | geohook_db::Error::IdNotFound { .. })
            if !ctx.json =>
        {
            Ok(Reply::Int(0))
        }
        Err(e) => Err(e.into()),
    }
}

/// `PERSIST key id`.
///
/// # Errors
///
/// A bad argument; in JSON mode the missing key or id (RESP answers 0); the
/// log's failure.
pub(crate) fn persist(
    core: &mut Core,
    w: &Writer<'_>,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    let (key, id) = (text(&args[1])?, text(&args[2])?);
    match core.db.persist(key, id, ctx.now()) {
        Ok(had) => {
            if had {
                let logged = [b"persist".as_slice(), key.as_bytes(), id.as_bytes()];
                core.commit(w, Record::new(Cmd::Persist, &logged, key, Some(id)))?;
            }
            Ok(ctx.ok_or_int(i64::from(had)))
        }
        Err(_) if !ctx.json => Ok(Reply::Int(0)),
        Err(e) => Err(e.into()),
    }
}
