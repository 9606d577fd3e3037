//! Login: the security stage (with CHAP when configured) and the operational-parameter
//! negotiation, answered the way tgtd or LIO do.

use std::io;

use ulp_iscsi::chap;
use ulp_iscsi::wire::Digests;
use ulp_iscsi::wire::login::{LoginRequestRepr, LoginResponseRepr, Stage, Stages};
use ulp_iscsi::wire::text::TextIter;

use super::session::{Session, bad};

impl Session<'_> {
    fn login_response(
        &mut self,
        r: &LoginRequestRepr<'_>,
        next: Option<Stage>,
        status: u16,
        keys: &[(String, String)],
    ) -> io::Result<()> {
        let mut text = Vec::new();
        for (k, v) in keys {
            text.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
        let done = next == Some(Stage::FullFeature) && status == 0;
        let rsp = LoginResponseRepr {
            stages: Stages {
                cont: false,
                current: r.stages.current,
                next,
            },
            version_max: 0,
            version_active: 0,
            isid: r.isid,
            tsih: if done { 1 } else { 0 },
            itt: r.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            status_class: (status >> 8) as u8,
            status_detail: status as u8,
            data: &text,
        };
        let mut b = vec![0u8; rsp.buffer_len(Digests::NONE)];
        rsp.emit(&mut b, Digests::NONE).map_err(|_| bad())?;
        self.send(&b)?;
        if done {
            self.logged_in = true;
            self.digests = self.pending_digests;
        }
        Ok(())
    }

    pub(super) fn on_login(&mut self, r: &LoginRequestRepr<'_>) -> io::Result<bool> {
        self.exp_cmd_sn = r.cmd_sn;
        let mut keys: Vec<(String, String)> = Vec::new();
        for p in TextIter::with_max_value_len(r.data, 8192) {
            let (k, v) = p.map_err(|_| bad())?;
            keys.push((k.to_string(), v.to_string()));
        }
        // Each key at most once per login from the initiator (RFC 7143 §6.3): a repeat is
        // answered Login reject, initiator error.
        for (k, _) in &keys {
            if self.keys_seen.contains(k) {
                self.login_response(r, None, 0x0200, &[])?;
                return Ok(false);
            }
            self.keys_seen.push(k.clone());
        }
        let get = |k: &str| keys.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        match r.stages.current {
            Stage::Security => {
                if self.chap_step == 0 && get("InitiatorName").is_none() {
                    self.login_response(r, None, 0x0207, &[])?;
                    return Ok(false);
                }
                if self.chap_step == 0 {
                    self.discovery = get("SessionType") == Some("Discovery");
                    if !self.discovery && get("TargetName") != Some(self.config.iqn.as_str()) {
                        self.login_response(r, None, 0x0203, &[])?;
                        return Ok(false);
                    }
                }
                let mut out = Vec::new();
                if let Some((user, secret)) = self.config.chap.clone() {
                    match self.chap_step {
                        0 => {
                            if !get("AuthMethod").is_some_and(|m| m.split(',').any(|x| x == "CHAP"))
                            {
                                self.login_response(r, None, 0x0201, &[])?;
                                return Ok(false);
                            }
                            out.push(("AuthMethod".into(), "CHAP".into()));
                            self.chap_step = 1;
                            self.login_response(r, None, 0, &out)?;
                        }
                        1 => {
                            if !get("CHAP_A").is_some_and(|m| m.split(',').any(|x| x == "5")) {
                                self.login_response(r, None, 0x0201, &[])?;
                                return Ok(false);
                            }
                            let challenge: Vec<u8> = (0..16u8)
                                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                                .collect();
                            self.chap_challenge = (7, challenge.clone());
                            out.push(("CHAP_A".into(), "5".into()));
                            out.push(("CHAP_I".into(), "7".into()));
                            out.push(("CHAP_C".into(), chap::encode_hex(&challenge)));
                            self.chap_step = 2;
                            self.login_response(r, None, 0, &out)?;
                        }
                        _ => {
                            let (id, ch) = self.chap_challenge.clone();
                            let want = chap::encode_hex(&chap::response(id, &secret, &ch));
                            let ok = get("CHAP_N") == Some(user.as_str())
                                && get("CHAP_R").and_then(|v| chap::decode_binary(v).ok())
                                    == chap::decode_binary(&want).ok();
                            if !ok {
                                self.login_response(r, None, 0x0201, &[])?;
                                return Ok(false);
                            }
                            // Mutual CHAP: answer the initiator's challenge; a target set
                            // for it refuses an initiator that does not challenge.
                            let theirs = (get("CHAP_I"), get("CHAP_C"));
                            match (&self.config.mutual_chap, theirs) {
                                (Some((name, secret)), (Some(i), Some(c))) => {
                                    let id = chap::parse_identifier(i).map_err(|_| bad())?;
                                    let ch = chap::decode_binary(c).map_err(|_| bad())?;
                                    let resp = chap::response(id, secret, &ch);
                                    out.push(("CHAP_N".into(), name.clone()));
                                    out.push(("CHAP_R".into(), chap::encode_hex(&resp)));
                                }
                                (None, (None, None)) => {}
                                _ => {
                                    self.login_response(r, None, 0x0201, &[])?;
                                    return Ok(false);
                                }
                            }
                            self.login_response(r, r.stages.next, 0, &out)?;
                        }
                    }
                    return Ok(true);
                }
                if get("AuthMethod").is_some() {
                    out.push(("AuthMethod".into(), "None".into()));
                }
                self.login_response(r, r.stages.next, 0, &out)?;
                Ok(true)
            }
            Stage::Operational => self.on_operational(r, &keys),
            Stage::FullFeature => Err(bad()),
        }
    }

    fn on_operational(
        &mut self,
        r: &LoginRequestRepr<'_>,
        keys: &[(String, String)],
    ) -> io::Result<bool> {
        let c = self.config;
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in keys {
            if let Some(i) = self.proposed.iter().position(|p| p == k) {
                self.proposed.remove(i);
                continue;
            }
            let num = |lo: u32, hi: u32| v.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
            let answer: Option<String> = match k.as_str() {
                "HeaderDigest" | "DataDigest" => {
                    let pick = v.split(',').find(|x| *x == "CRC32C" || *x == "None");
                    if let Some(p) = pick {
                        if k == "HeaderDigest" {
                            self.pending_digests.header = p == "CRC32C";
                        } else {
                            self.pending_digests.data = p == "CRC32C";
                        }
                    }
                    Some(pick.unwrap_or("Reject").to_string())
                }
                "MaxRecvDataSegmentLength" => {
                    self.mrdsl = num(512, 0xFF_FFFF).ok_or_else(bad)?;
                    None
                }
                "InitialR2T" => {
                    let yes = v == "Yes" || c.initial_r2t;
                    self.initial_r2t = yes;
                    if c.propose_keys && v == "Yes" {
                        None
                    } else {
                        Some(if yes { "Yes" } else { "No" }.into())
                    }
                }
                "ImmediateData" => {
                    let yes = v == "Yes" && c.immediate_data;
                    self.immediate_data = yes;
                    if c.propose_keys && v == "No" {
                        None
                    } else {
                        Some(if yes { "Yes" } else { "No" }.into())
                    }
                }
                "MaxBurstLength" => {
                    self.max_burst = num(512, 0xFF_FFFF).ok_or_else(bad)?.min(c.max_burst_len);
                    Some(self.max_burst.to_string())
                }
                "FirstBurstLength" => {
                    self.first_burst = num(512, 0xFF_FFFF).ok_or_else(bad)?.min(c.first_burst_len);
                    Some(self.first_burst.to_string())
                }
                "ErrorRecoveryLevel" => Some("0".into()),
                "MaxConnections" | "MaxOutstandingR2T" => Some("1".into()),
                "DefaultTime2Wait" => Some(num(0, 3600).ok_or_else(bad)?.max(2).to_string()),
                "DefaultTime2Retain" => Some(num(0, 3600).ok_or_else(bad)?.min(20).to_string()),
                "DataPDUInOrder" | "DataSequenceInOrder" if c.propose_keys && v == "Yes" => None,
                "DataPDUInOrder" | "DataSequenceInOrder" => Some("Yes".into()),
                // RFC 7143 §13.25: obsolete marker keys are answered Reject.
                "IFMarker" | "OFMarker" | "IFMarkInt" | "OFMarkInt" => Some("Reject".into()),
                _ => Some("NotUnderstood".into()),
            };
            if let Some(a) = answer {
                out.push((k.clone(), a));
            }
        }
        if !self.declared {
            self.declared = true;
            out.push((
                "MaxRecvDataSegmentLength".into(),
                c.max_recv_data_segment_len.to_string(),
            ));
            out.push(("TargetPortalGroupTag".into(), "1".into()));
            if self.first_burst > self.max_burst {
                self.first_burst = self.max_burst;
            }
        }
        if c.propose_keys && !self.proposals_sent && !self.discovery {
            self.proposals_sent = true;
            for (k, v) in [
                ("MaxConnections", "1"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "20"),
                ("MaxOutstandingR2T", "1"),
                ("DataPDUInOrder", "Yes"),
                ("DataSequenceInOrder", "Yes"),
            ] {
                if !keys.iter().any(|(a, _)| a == k) {
                    self.proposed.push(k);
                    out.push((k.into(), v.into()));
                }
            }
            if !self.proposed.is_empty() {
                self.login_response(r, None, 0, &out)?;
                return Ok(true);
            }
        }
        if !self.proposed.is_empty() {
            // The initiator did not answer every proposal (LIO fails the login).
            self.login_response(r, None, 0x0207, &[])?;
            return Ok(false);
        }
        let next = r.stages.next.filter(|n| *n == Stage::FullFeature);
        self.login_response(r, next, 0, &out)?;
        Ok(true)
    }
}
