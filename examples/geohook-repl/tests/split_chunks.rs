//! The leader cuts its stream into chunks of `max_batch` bytes, which may end
//! inside a command; the progress announcements between chunks must never
//! land inside one. Tiny batches cut every command several times.

mod common;

use std::sync::Arc;

use common::{follower_config, listen, start_follower, wait_offset, Kv};
use geohook_repl::LeaderConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cut_across_chunks_arrive_whole() {
    for max_batch in [1, 5, 17, 100, 1000] {
        let (kv, leader) = Kv::new_leader(LeaderConfig {
            max_batch,
            ..Default::default()
        });
        let listener = listen(leader.clone(), kv.clone(), 0).await;
        let f_kv = Arc::new(Kv::default());
        let mut f = start_follower(f_kv.clone(), follower_config(listener.port));
        wait_offset(&mut f, leader.offset()).await;
        for i in 0..300 {
            let value = "v".repeat(i % 50);
            kv.write(&[b"SET", format!("key{i}").as_bytes(), value.as_bytes()]);
        }
        let s = wait_offset(&mut f, leader.offset()).await;
        assert_eq!(
            (s.sessions, s.last_error.as_deref()),
            (1, None),
            "max_batch {max_batch}"
        );
        assert_eq!(f_kv.map(), kv.map(), "max_batch {max_batch}");
        f.stop().await;
        listener.shutdown().await;
    }
}
