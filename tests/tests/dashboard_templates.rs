//! The dashboard's Templates view and the profile and template on a VM's page, against a
//! real all-in-one daemon (in a network namespace of the test's own) through a dashboard
//! holding a viewer certificate, as headless chromium renders them: a template kctl took
//! of a running test guest, a clone of it, and a VM of the fast profile.

use kcore_tests::dashboard::{Browser, Dashboard, viewer_env};
use kcore_tests::{Daemon, NetNs};

const API_PORT: u16 = 29091;
const DASH_PORT: u16 = 28081;

#[test]
fn dashboard_templates_view_and_profiles_on_vm_pages() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns_with(&ns, &["--listen", &format!("127.0.0.1:{API_PORT}")]);
    d.template_of_a_guest("gold", "tpl");
    d.kctl(&["vm", "create", "kid", "--template", "tpl"])
        .expect_ok("clone");
    d.create_guest("quick", "", &["--profile", "fast", "--start=false"]);

    let viewer = viewer_env(&d, "dash", API_PORT);
    let dash = Dashboard::start(Some(&ns), DASH_PORT, &viewer, d.dir.path());
    let browser = Browser::new(Some(&ns));
    let desktop = (1280, 1400);

    let dom = browser.load(&dash.url("/"), "overview-nav", desktop);
    assert!(
        dom.contains(r#"<a href="/templates">Templates</a>"#),
        "{dom}"
    );
    let dom = browser.load(&dash.url("/templates"), "templates", desktop);
    assert!(
        dom.contains(r#"<a href="/templates" class="active">Templates</a>"#),
        "the nav marks the view: {dom}"
    );
    assert!(
        dom.contains(r#"data-template="tpl" data-clones="1""#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<a href="/vms/kid">kid</a>"#),
        "its clone: {dom}"
    );
    assert!(
        dom.contains("<td>gold</td>") && dom.contains("128 MiB") && dom.contains("node1"),
        "source, memory, node: {dom}"
    );
    assert!(dom.contains(" ago)"), "created: {dom}");
    browser.load(&dash.url("/templates"), "templates-phone", (390, 1000));

    let dom = browser.load(&dash.url("/vms/kid"), "vm-clone", desktop);
    assert!(
        dom.contains(r#"<a id="template" href="/templates#template-tpl">tpl</a>"#),
        "a clone names its template: {dom}"
    );
    assert!(dom.contains(r#"data-profile="standard""#), "{dom}");
    let dom = browser.load(&dash.url("/vms/quick"), "vm-fast", desktop);
    assert!(
        dom.contains(r#"data-profile="fast">fast</span>"#),
        "the profile: {dom}"
    );
    assert!(
        dom.contains("<td>microvm</td>"),
        "the machine it picked: {dom}"
    );
    assert!(!dom.contains(r#"id="template""#), "no clone: {dom}");
    drop(dash);
    drop(d);
}
