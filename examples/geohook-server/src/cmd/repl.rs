//! Replication commands: `FOLLOW host port | no one`, `ROLE`, `REPLCONF`
//! (a follower announcing itself) and `HEALTHZ`.

use std::sync::Arc;

use crate::cmd::ctx::{json_str, CmdError, Ctx, Session};
use crate::repl::control::follow_command;
use crate::repl::status::{self, healthz, Role};
use crate::state::Shared;
use geohook_resp::Reply;

/// `FOLLOW host port` or `FOLLOW no one`.
///
/// # Errors
///
/// A bad port, or replication not started.
pub(crate) fn follow(shared: &Arc<Shared>, ctx: &Ctx, args: &[Vec<u8>]) -> Result<Reply, CmdError> {
    follow_command(shared, args)?;
    Ok(ctx.ok())
}

/// `HEALTHZ`: fails on a follower that is behind its leader.
///
/// # Errors
///
/// `catching up to leader`.
pub(crate) fn health(shared: &Shared, ctx: &Ctx) -> Result<Reply, CmdError> {
    healthz(shared)?;
    Ok(ctx.ok())
}

/// `ROLE` in Tile38's shape (Redis's array): on a leader `["master",
/// offset, [[ip, "port", "offset"], …]]`, on a follower `["slave", host,
/// port, state, offset]`; in JSON the same under `role`, followers under
/// `slaves`. The numbers that Tile38 writes as strings stay strings.
pub(crate) fn role(shared: &Shared, ctx: &Ctx) -> Reply {
    render_role(ctx, &status::role(shared))
}

fn render_role(ctx: &Ctx, role: &Role) -> Reply {
    match role {
        Role::Master { offset, followers } if ctx.json => {
            let slaves: Vec<String> = followers
                .iter()
                .map(|(ip, port, off)| {
                    format!(
                        "{{\"ip\":{},\"port\":\"{port}\",\"offset\":\"{off}\"}}",
                        json_str(ip)
                    )
                })
                .collect();
            ctx.ok_json(&format!(
                ",\"role\":{{\"role\":\"master\",\"offset\":{offset},\"slaves\":[{}]}}",
                slaves.join(",")
            ))
        }
        Role::Master { offset, followers } => Reply::Array(vec![
            Reply::bulk("master"),
            Reply::Int(i64::try_from(*offset).unwrap_or(i64::MAX)),
            Reply::Array(
                followers
                    .iter()
                    .map(|(ip, port, off)| {
                        Reply::Array(vec![
                            Reply::bulk(ip.as_str()),
                            Reply::bulk(port.to_string()),
                            Reply::bulk(off.to_string()),
                        ])
                    })
                    .collect(),
            ),
        ]),
        Role::Slave {
            host,
            port,
            state,
            offset,
        } if ctx.json => ctx.ok_json(&format!(
            ",\"role\":{{\"role\":\"slave\",\"host\":{},\"port\":{port},\"state\":\"{state}\",\"offset\":{offset}}}",
            json_str(host)
        )),
        Role::Slave {
            host,
            port,
            state,
            offset,
        } => Reply::Array(vec![
            Reply::bulk("slave"),
            Reply::bulk(host.as_str()),
            Reply::Int(i64::from(*port)),
            Reply::bulk(*state),
            Reply::Int(i64::try_from(*offset).unwrap_or(i64::MAX)),
        ]),
    }
}

/// `REPLCONF listening-port port | ip-address ip`: what a follower says of
/// itself before its `PSYNC` on this connection (Tile38's and Redis's
/// handshake); other options are taken and ignored, as Redis does.
///
/// # Errors
///
/// A port that is not from 1 to 65535, an empty or overlong address.
pub(crate) fn replconf(
    session: &mut Session,
    ctx: &Ctx,
    args: &[Vec<u8>],
) -> Result<Reply, CmdError> {
    session.announced.take(&args[1..]).map_err(CmdError::Msg)?;
    Ok(ctx.ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Reply) -> String {
        let mut out = Vec::new();
        r.encode(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn json(r: &Reply) -> serde_json::Value {
        let Reply::Bulk(b) = r else {
            panic!("JSON is a bulk reply")
        };
        let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
        v.as_object_mut().unwrap().remove("elapsed").unwrap();
        v
    }

    #[test]
    fn roles_take_tile38s_shapes() {
        let master = Role::Master {
            offset: 120,
            followers: vec![("127.0.0.1".into(), 9852, 100)],
        };
        assert_eq!(
            text(&render_role(&Ctx::new(false), &master)),
            "*3\r\n$6\r\nmaster\r\n:120\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9852\r\n$3\r\n100\r\n"
        );
        assert_eq!(
            json(&render_role(&Ctx::new(true), &master)),
            serde_json::json!({"ok":true,"role":{"role":"master","offset":120,
                "slaves":[{"ip":"127.0.0.1","port":"9852","offset":"100"}]}})
        );
        let alone = Role::Master {
            offset: 0,
            followers: vec![],
        };
        assert_eq!(
            text(&render_role(&Ctx::new(false), &alone)),
            "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
        );
        let slave = Role::Slave {
            host: "10.0.0.1".into(),
            port: 9851,
            state: "connected",
            offset: 77,
        };
        assert_eq!(
            text(&render_role(&Ctx::new(false), &slave)),
            "*5\r\n$5\r\nslave\r\n$8\r\n10.0.0.1\r\n:9851\r\n$9\r\nconnected\r\n:77\r\n"
        );
        assert_eq!(
            json(&render_role(&Ctx::new(true), &slave)),
            serde_json::json!({"ok":true,"role":{"role":"slave","host":"10.0.0.1","port":9851,
                "state":"connected","offset":77}})
        );
    }

    #[test]
    fn replconf_takes_a_port_and_an_address_and_refuses_bad_ones() {
        let args = |line: &str| -> Vec<Vec<u8>> {
            line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
        };
        let mut session = Session::new(true);
        let ctx = Ctx::new(false);
        replconf(&mut session, &ctx, &args("REPLCONF listening-port 9852")).unwrap();
        replconf(&mut session, &ctx, &args("REPLCONF ip-address 10.0.0.2")).unwrap();
        replconf(&mut session, &ctx, &args("REPLCONF capa eof")).unwrap();
        assert_eq!(session.announced.port, Some(9852));
        assert_eq!(session.announced.ip.as_deref(), Some("10.0.0.2"));
        for (line, err) in [
            ("REPLCONF listening-port 0", "invalid argument '0'"),
            ("REPLCONF listening-port 65536", "invalid argument '65536'"),
            ("REPLCONF listening-port x", "invalid argument 'x'"),
        ] {
            let e = replconf(&mut session, &ctx, &args(line)).unwrap_err();
            assert_eq!(e.to_string(), err, "{line}");
        }
        assert_eq!(session.announced.port, Some(9852));
    }
}
