use proptest::prelude::*;

use super::*;

const STAT: &str = include_str!("../testdata/show_stat_2.6.csv");
const INFO: &str = include_str!("../testdata/show_info_2.6.txt");

fn backend(proxies: &BTreeMap<(ProxySide, String), ProxyStats>, name: &str) -> ProxyStats {
    proxies[&(ProxySide::Backend, name.to_owned())].clone()
}

#[test]
fn a_real_answer_gives_frontends_backends_and_servers_by_state() {
    let proxies = parse_show_stat(STAT).unwrap();
    assert_eq!(proxies.len(), 2, "{proxies:?}");
    assert!(proxies.contains_key(&(ProxySide::Frontend, "fe_18080".into())));
    let be = backend(&proxies, "be_default_web_http");
    let counts: Vec<_> = be
        .servers
        .iter()
        .map(|((s, c), n)| (s.as_str(), c.as_str(), *n))
        .collect();
    assert_eq!(
        counts,
        [("DOWN", "L4CON", 1), ("MAINT", "", 1), ("NOCHECK", "", 1)]
    );
}

#[test]
fn counters_are_read_by_column_name() {
    let text = "# svname,pxname,type,status,check_status,scur,stot,bin,bout,qcur,ereq,econ,eresp,dcon,dses,dreq,dresp\n\
                FRONTEND,fe_80,0,OPEN,,3,40,1000,2000,,5,,,6,7,8,9\n\
                BACKEND,be_a_b_http,1,UP,,2,30,900,1900,4,,10,11,,,,\n\
                s1,be_a_b_http,2,UP 1/3,* L7OK,1,1,1,1,0,,,,,,,\n\
                s2,be_a_b_http,2,DRAIN,L4OK,1,1,1,1,0,,,,,,,\n";
    let proxies = parse_show_stat(text).unwrap();
    let fe = &proxies[&(ProxySide::Frontend, "fe_80".to_owned())];
    assert_eq!(
        (
            fe.sessions_current,
            fe.sessions_total,
            fe.bytes_in,
            fe.bytes_out
        ),
        (3, 40, 1000, 2000)
    );
    assert_eq!(
        (
            fe.request_errors,
            fe.denied_connections,
            fe.denied_sessions,
            fe.denied_requests,
            fe.denied_responses
        ),
        (5, 6, 7, 8, 9)
    );
    let be = backend(&proxies, "be_a_b_http");
    assert_eq!(
        (be.queue_current, be.connection_errors, be.response_errors),
        (4, 10, 11)
    );
    assert_eq!(be.servers[&(ServerStatus::Up, "L7OK".to_owned())], 1);
    assert_eq!(be.servers[&(ServerStatus::Drain, "L4OK".to_owned())], 1);
}

#[test]
fn show_info_gives_uptime_and_connections() {
    let info = parse_show_info(INFO).unwrap();
    assert_eq!(info.uptime_seconds, Some(2));
    assert_eq!(info.current_connections, Some(0));
    assert_eq!(info.total_connections, Some(4));
    assert!(matches!(
        parse_show_info("Unknown command\n"),
        Err(StatsError::Info(_))
    ));
}

#[test]
fn bad_answers_are_typed_errors() {
    assert!(matches!(
        parse_show_stat("Permission denied\n"),
        Err(StatsError::NoHeader(_))
    ));
    assert_eq!(
        parse_show_stat("# pxname,svname\n").unwrap_err(),
        StatsError::MissingColumn("scur")
    );
    let header = STAT.lines().next().unwrap();
    let columns = header.matches(',').count();
    let mut row = vec!["fe_1", "FRONTEND"];
    row.resize(columns + 1, "");
    row[4] = "lots"; // scur
    row[32] = "0"; // type
    let text = format!("{header}\n{}\n", row.join(","));
    let err = parse_show_stat(&text).unwrap_err();
    assert!(err.to_string().contains("scur is \"lots\""), "{err}");
    row[4] = "1";
    row[32] = "9";
    let err = parse_show_stat(&format!("{header}\n{}\n", row.join(","))).unwrap_err();
    assert!(err.to_string().contains("type \"9\""), "{err}");
}

#[test]
fn check_statuses_and_states_stay_a_bounded_set() {
    assert_eq!(check_status("* L4TOUT"), "L4TOUT");
    assert_eq!(check_status("x{evil=\"1\"}"), "OTHER");
    assert_eq!(check_status(&"A".repeat(40)), "OTHER");
    assert_eq!(
        ServerStatus::parse("MAINT (via be/s1)"),
        ServerStatus::Maint
    );
    assert_eq!(ServerStatus::parse("DOWN 1/2"), ServerStatus::Down);
    assert_eq!(ServerStatus::parse("no check"), ServerStatus::NoCheck);
    assert_eq!(ServerStatus::parse("whatever"), ServerStatus::Other);
}

proptest! {
    #[test]
    fn any_answer_parses_or_fails_without_panicking(text in ".{0,400}") {
        let _ = parse_show_stat(&text);
        let _ = parse_show_info(&text);
        let _ = parse_show_stat(&format!("{}\n{text}", STAT.lines().next().unwrap()));
    }

    #[test]
    fn mangled_real_answers_do_not_panic(cut in 0usize..2525, junk in "[,\"\n0-9a-z]{0,40}") {
        let cut = cut.min(STAT.len());
        let cut = (0..=cut).rev().find(|i| STAT.is_char_boundary(*i)).unwrap_or(0);
        let _ = parse_show_stat(&format!("{}{junk}{}", &STAT[..cut], &STAT[cut..]));
    }
}
