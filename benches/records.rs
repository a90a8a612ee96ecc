//! Records benchmark: `GET /records` queries on 100,000 records in a real SQLite file.
//!
//!     cargo bench --bench records

use std::time::{Duration, Instant};

use huiying::contract::records::{Record, RecordQuery};
use huiying::store::records::{SqliteRecords as Records, timestamp};
use time::macros::{date, datetime};

const SUBJECTS: &[(&str, &str)] = &[
    ("一只坐在月球上的猫", "a cat sitting on the moon"),
    ("海边的灯塔，水彩画", "a lighthouse by the sea, watercolor"),
    ("雪地里的红狐狸", "a red fox in the snow"),
    ("赛博朋克风格的城市夜景", "a cyberpunk city at night"),
    ("山间的小木屋", "a small cabin in the mountains"),
];

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(&dir.path().join("records.db")).unwrap();
    let total = 100_000;
    let start = Instant::now();
    for n in 0..total {
        let (chinese, english) = SUBJECTS[n % SUBJECTS.len()];
        let at = datetime!(2026-01-01 00:00 UTC) + time::Duration::minutes(5 * n as i64);
        records
            .insert(&Record {
                owner: None,
                cost: Default::default(),
                fallback: None,
                group_id: None,
                picked: false,
                id: 0,
                job_id: format!("00000000-0000-4000-8000-{n:012}"),
                original_prompt: format!("{chinese} #{n}"),
                english_prompt: format!("{english} #{n}"),
                model: ["google/gemini-2.5-flash-image-preview:free", "dall-e-3", "huiying/placeholder"][n % 3].into(),
                local_path: format!("images/huiying_image_{n}.jpg"),
                r2_url: None,
                r2_error: None,
                file_size: 100_000,
                width: 1024,
                height: 1024,
                format: "jpeg".into(),
                created_at: timestamp(at),
                updated_at: timestamp(at),
                user: None,
                labels: Default::default(),
                kind: Default::default(),
                inputs: Vec::new(),
            })
            .unwrap();
    }
    println!(
        "inserted {total} records in {:.1} s (one transaction each, synchronous=FULL)",
        start.elapsed().as_secs_f64()
    );

    let base = RecordQuery::default();
    let cases = [
        ("newest page", base.clone()),
        ("page 2000 of 5000", RecordQuery { page: 2000, ..base.clone() }),
        ("keyword 月球上 (full-text)", RecordQuery { keyword: Some("月球上".into()), ..base.clone() }),
        ("keyword lighthouse (full-text)", RecordQuery { keyword: Some("lighthouse".into()), ..base.clone() }),
        ("keyword 猫 (1 character: LIKE scan)", RecordQuery { keyword: Some("猫".into()), ..base.clone() }),
        ("keyword #99999 (rare, full-text)", RecordQuery { keyword: Some("#99999".into()), ..base.clone() }),
        ("model dall-e-3", RecordQuery { model: Some("dall-e-3".into()), ..base.clone() }),
        (
            "one day",
            RecordQuery {
                date_from: Some(date!(2026 - 03 - 01)),
                date_to: Some(date!(2026 - 03 - 01)),
                ..base.clone()
            },
        ),
        (
            "keyword fox + model + month",
            RecordQuery {
                keyword: Some("red fox".into()),
                model: Some("dall-e-3".into()),
                date_from: Some(date!(2026 - 02 - 01)),
                date_to: Some(date!(2026 - 02 - 28)),
                ..base.clone()
            },
        ),
    ];
    for (label, query) in cases {
        let page = records.query(&query).unwrap(); // warm-up
        let (mut runs, start) = (0u32, Instant::now());
        while start.elapsed() < Duration::from_secs(2) || runs < 5 {
            std::hint::black_box(records.query(&query).unwrap());
            runs += 1;
        }
        let per = start.elapsed() / runs;
        println!("{label}: {:.2} ms per query (total {}, {runs} runs)", per.as_secs_f64() * 1e3, page.total);
    }
}
