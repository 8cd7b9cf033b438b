//! Writes the seed corpus of the protocol targets: well-formed messages of
//! each kind, so that fuzzing starts from bytes that get past the framing.
//! `cargo run --bin make_seeds` (scripts/fuzz.sh does, when seeds are missing).

use std::path::{Path, PathBuf};

use vx_ctl_protocol::{
    ClientHello, Request, RetryRequest, SearchFilters, SearchMode, SearchRequest,
};
use vx_plugin_protocol::{
    DaemonToHost, Detection, Hello, HostToDaemon, Job, JobReply, MediaKind, Needs, PluginError,
    PluginOutput, SegmentResult, ShmRef,
};

fn write(dir: &Path, name: &str, bytes: Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let seeds = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));
    let segment = SegmentResult {
        start_s: 1.5,
        end_s: 4.0,
        text: "the tax deadline is friday".into(),
        labels: vec!["speech".into(), "person".into()],
        faces: 2,
        speaker: Some("speaker 1".into()),
        detections: vec![Detection {
            label: "face".into(),
            score: 0.9,
            bbox: [0.1, 0.2, 0.3, 0.4],
            landmarks: vec![[0.15, 0.25]],
            ..Default::default()
        }],
        ..Default::default()
    };
    let replies = [
        HostToDaemon::Hello(Hello {
            protocol: 3,
            plugin: "ocr".into(),
            plugin_version: "1".into(),
        }),
        HostToDaemon::Needs(Needs {
            frame_max_side: Some(640),
            audio: true,
            text_embedding: None,
        }),
        HostToDaemon::Done(JobReply {
            id: 7,
            outcome: Ok(PluginOutput {
                segments: vec![segment.clone(), segment],
            }),
        }),
        HostToDaemon::Done(JobReply {
            id: 8,
            outcome: Err(PluginError::new("bad").with_help("retry")),
        }),
        HostToDaemon::Embedded {
            id: 9,
            outcome: Ok(vec![vec![0.5; 4]]),
        },
    ];
    for (i, r) in replies.iter().enumerate() {
        let bytes = vx_wire::encode(r).unwrap();
        write(
            &seeds.join("wire_frame"),
            &format!("reply-{i}"),
            bytes.clone(),
        );
        write(&seeds.join("host_reply"), &format!("reply-{i}"), bytes);
    }
    let job = DaemonToHost::Job(Job {
        id: 1,
        path: "/m/a.mp4".into(),
        kind: MediaKind::Video,
        duration_s: Some(10.0),
        shm: ShmRef {
            pid: 1,
            fd: 3,
            len: 100,
        },
        frames: vec![],
        audio: None,
        artefact_dir: "/tmp".into(),
    });
    write(
        &seeds.join("wire_frame"),
        "job",
        vx_wire::encode(&job).unwrap(),
    );

    let mut hello = vx_wire::encode(&ClientHello {
        protocol: 3,
        client_version: "0.1.0".into(),
    })
    .unwrap();
    for r in [
        Request::Status,
        Request::Search(SearchRequest {
            query: "\"ocean waves\" label:bus".into(),
            limit: 10,
            filters: SearchFilters {
                labels: vec!["bus".into()],
                path_prefix: Some("/m".into()),
                after: Some(1_700_000_000),
                min_duration_s: Some(60.0),
                ..Default::default()
            },
            mode: SearchMode::Hybrid,
            per_file: true,
            moments_per_file: 3,
        }),
        Request::Retry(RetryRequest {
            paths: vec!["/m/a.mp4".into()],
            all_failed: true,
        }),
        Request::File("/m/a.mp4".into()),
    ] {
        hello.extend(vx_wire::encode(&r).unwrap());
    }
    write(&seeds.join("control_request"), "session", hello);
}
