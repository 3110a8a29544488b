//! Shards: keep-alive connections opened at once are shared out among them.

use crate::support::{sample, scrape, wait_for, Client, Driver, Hiku, Worker};

/// Runs `f` on a thread pinned to the core it starts on: every connection
/// it opens has its SYN processed there.
fn from_one_core<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: sched_getcpu(3), and a zeroed cpu_set_t with one CPU
            // set for this thread.
            unsafe {
                let cpu = libc::sched_getcpu() as usize;
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
            }
            f()
        })
        .join()
        .unwrap()
    })
}

fn open_by_shard(hiku: &Hiku) -> Vec<f64> {
    let scrape = scrape(hiku);
    (0..2).map(|i| sample(&scrape, "hiku_connections_open", Some(("shard", &i.to_string())))).collect()
}

on_both_drivers!(keep_alive_connections_opened_at_once_are_shared_out_among_the_shards);
fn keep_alive_connections_opened_at_once_are_shared_out_among_the_shards(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).cores(2).start_with("random", &[&w.url], serde_json::json!({}));
    from_one_core(|| {
        // As a load generator opens its connections: from one core, all at
        // once, and each then calls again and again.
        let mut clients: Vec<Client> = (0..40).map(|_| hiku.client()).collect();
        let call = |clients: &mut Vec<Client>| {
            for (i, c) in clients.iter_mut().enumerate() {
                let res = c.request("POST", &format!("/run/f{i}"), &[], b"x");
                assert_eq!((res.status, res.body.as_slice()), (200, &b"x"[..]));
            }
        };
        call(&mut clients);
        wait_for("the connections shared out between the shards", || {
            call(&mut clients);
            // The 40, and the scrape's own connection on either.
            let open = open_by_shard(&hiku);
            open.iter().sum::<f64>() == 41.0 && (open[0] - open[1]).abs() <= 8.0
        });
        // Each connection goes on answering where it is now.
        call(&mut clients);
        assert_eq!(w.seen().len() % 40, 0, "every call reached the worker once");
    });
}
