//! Only for you: on loopback TCP and unix-socket listeners, kprox serves the user it runs as,
//! root, and the users configured in `listen.allowed_users`. Anyone else on the machine — a
//! second user of a jump host or CI runner, a process of another account — gets a 403 naming
//! them and the option that would let them in: kubectl proxy lends your credentials to every
//! local user, and its Host filter is not an access control (kubectl#142).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, Response, StatusCode};

use crate::body::{IncomingBody, ProxyBody};
use crate::handler::Handler;
use crate::peer_user::tcp_peer_uid;

/// The users a local listener serves.
#[derive(Clone, Debug)]
pub struct LocalUsers {
    /// kprox's own UID, root, then the allowed users'.
    allowed: Vec<u32>,
    owner: u32,
}

/// Whether a connection's user is served.
#[derive(Debug)]
pub enum Verdict {
    Served,
    /// Refused, with the message the client gets.
    Refused(String),
}

impl LocalUsers {
    /// Who `[listen]` lets use loopback and unix-socket connections; `None` when anyone may.
    /// With a kubeconfig (`auto`), only the user kprox runs as, root and `allowed_users`: the
    /// credentials are that user's. In a pod (`auto`), or with `any`, anyone who can connect.
    pub fn from_config(
        listen: &kprox_config::ListenConfig,
        in_cluster: bool,
    ) -> Result<Option<Self>, String> {
        let checked = match listen.local_users {
            kprox_config::LocalUsers::Any => false,
            kprox_config::LocalUsers::Owner => true,
            kprox_config::LocalUsers::Auto => !in_cluster,
        };
        checked
            .then(|| Self::new(&listen.allowed_users))
            .transpose()
    }

    /// kprox's user, root, and `allowed`: users (names from `/etc/passwd`, or UIDs) and, as
    /// `%group` (a name from `/etc/group`, or a GID), every user of a group — its listed
    /// members and the users whose primary group it is, as the files say at start-up.
    pub fn new(allowed: &[String]) -> Result<Self, String> {
        let owner = rustix::process::getuid().as_raw();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let mut uids = vec![owner, 0];
        for entry in allowed {
            match entry.strip_prefix('%') {
                Some(name) => uids.extend(group_uids(&passwd, &group, name).ok_or_else(|| {
                    format!("listen.allowed_users: no local group is called `{name}` (fix: %NAME with a name from /etc/group, or %GID)")
                })?),
                None => uids.push(match entry.parse::<u32>() {
                    Ok(uid) => uid,
                    Err(_) => uid_of(&passwd, entry).ok_or_else(|| {
                        format!("listen.allowed_users: no local user is called `{entry}` (fix: a name from /etc/passwd, a UID, or %GROUP)")
                    })?,
                }),
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(Self {
            allowed: uids,
            owner,
        })
    }

    /// The verdict for a TCP connection accepted on `local` from `peer`: only loopback
    /// connections are judged (others come from other machines and authenticate with client
    /// certificates or a client token).
    pub fn judge_tcp(&self, local: SocketAddr, peer: SocketAddr) -> Verdict {
        if !is_loopback(local.ip()) {
            return Verdict::Served;
        }
        self.judge(tcp_peer_uid(local, peer))
    }

    /// The verdict for a connection whose peer runs as `uid` (as far as the kernel said).
    pub fn judge(&self, uid: std::io::Result<u32>) -> Verdict {
        match uid {
            Ok(uid) if self.allowed.contains(&uid) => Verdict::Served,
            Ok(uid) => {
                let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
                let name = |uid| {
                    name_of(&passwd, uid)
                        .map_or_else(|| format!("uid {uid}"), |n| format!("{n} (uid {uid})"))
                };
                let them = name_of(&passwd, uid).unwrap_or_else(|| uid.to_string());
                Verdict::Refused(format!(
                    "kprox refused this connection: it serves only {} and root, and the connecting process runs as {}; allow it with --allow-user {them} (listen.allowed_users), or every local user with --allow-any-local-user",
                    name(self.owner),
                    name(uid),
                ))
            }
            // Fail closed: a connection whose user cannot be told is not served.
            Err(error) => Verdict::Refused(format!(
                "kprox refused this connection: it could not tell which local user opened it ({error}); --allow-any-local-user serves every local user"
            )),
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// `name`'s UID in `/etc/passwd` text.
fn uid_of(passwd: &str, name: &str) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// The users of the group `name` (or GID): its members in `/etc/group` text and the users whose
/// primary group it is in `/etc/passwd` text; `None` when there is no such group.
fn group_uids(passwd: &str, group: &str, name: &str) -> Option<Vec<u32>> {
    let (gid, members) = group.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let gid = fields.get(2)?.parse::<u32>().ok()?;
        (fields[0] == name || name.parse::<u32>() == Ok(gid)).then(|| (gid, fields.get(3).copied()))
    })?;
    let mut uids: Vec<u32> = members
        .unwrap_or_default()
        .split(',')
        .filter(|m| !m.is_empty())
        .filter_map(|member| uid_of(passwd, member))
        .collect();
    uids.extend(passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(3)?.parse::<u32>().ok()? == gid).then(|| fields.get(2)?.parse::<u32>().ok())?
    }));
    Some(uids)
}

/// The name of `uid` in `/etc/passwd` text.
fn name_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields[0].to_owned())
    })
}

/// Answers every request of a refused connection with 403 and closes it.
#[derive(Debug)]
pub(crate) struct RefusePeer {
    pub message: String,
    pub metrics: Option<Arc<kprox_telemetry::Metrics>>,
}

impl Handler for RefusePeer {
    fn handle(
        &self,
        _request: Request<IncomingBody>,
        _client: Option<IpAddr>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        if let Some(metrics) = &self.metrics {
            metrics.rejected("peer-user");
        }
        std::future::ready(crate::forward::closing(crate::status_response(
            StatusCode::FORBIDDEN,
            &self.message,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n";

    #[test]
    fn users_are_found_by_name_and_named_by_uid() {
        assert_eq!(uid_of(PASSWD, "alice"), Some(1000));
        assert_eq!(uid_of(PASSWD, "bob"), None);
        assert_eq!(name_of(PASSWD, 65534).as_deref(), Some("nobody"));
        assert_eq!(name_of(PASSWD, 4242), None);
    }

    #[test]
    fn a_group_is_its_members_and_the_users_whose_primary_group_it_is() {
        let group = "root:x:0:\nnogroup:x:65534:\ndev:x:2000:alice,ghost\n";
        assert_eq!(group_uids(PASSWD, group, "nogroup"), Some(vec![65534]));
        assert_eq!(group_uids(PASSWD, group, "65534"), Some(vec![65534]));
        assert_eq!(
            group_uids(PASSWD, group, "dev"),
            Some(vec![1000]),
            "unknown members skipped"
        );
        assert_eq!(group_uids(PASSWD, group, "staff"), None);
    }

    #[test]
    fn owner_root_and_allowed_users_are_served_others_refused_by_name() {
        let users = LocalUsers::new(&["4242".to_owned()]).expect("users");
        assert!(matches!(users.judge(Ok(users.owner)), Verdict::Served));
        assert!(matches!(users.judge(Ok(0)), Verdict::Served));
        assert!(matches!(users.judge(Ok(4242)), Verdict::Served));
        let Verdict::Refused(message) = users.judge(Ok(4243)) else {
            panic!("uid 4243 was served");
        };
        assert!(
            message.contains("uid 4243") && message.contains("--allow-user 4243"),
            "{message}"
        );
        assert!(matches!(
            users.judge(Err(std::io::Error::other("no entry"))),
            Verdict::Refused(_)
        ));
        assert!(LocalUsers::new(&["no-such-user-kprox".to_owned()]).is_err());
    }
}
