//! CenterFace on real photos (from packages that scripts/setup.sh installs)
//! and on pictures without faces. Prints what it found, for the record.

// The photo loader is shared with the objects plugin's tests.
#[path = "../../objects/tests/common/mod.rs"]
mod common;

use common::{Picture, fitted, host_context, photo, voc_boxes, voc_photo};
use vx_plugin_api::Detection;
use vx_plugin_faces::Faces;

fn open() -> Faces {
    Faces::open(&host_context()).expect("centerface opens")
}

fn detect(faces: &mut Faces, name: &str, picture: &Picture) -> Vec<Detection> {
    let found = faces.detect(&picture.frame(0.0)).expect("detect");
    let list: Vec<String> = found
        .iter()
        .map(|d| format!("{:.2} {:.2?}", d.score, d.bbox))
        .collect();
    eprintln!("{name} ({}×{}): {list:#?}", picture.width, picture.height);
    found
}

fn inside(p: [f32; 2], b: &[f32; 4]) -> bool {
    b[0] <= p[0] && p[0] <= b[2] && b[1] <= p[1] && p[1] <= b[3]
}

/// One face in a portrait, around the eyes as marked by hand (in pixels of
/// the original photo), with its eye landmarks on them.
fn check_portrait(name: &str, eyes: [[f32; 2]; 2]) {
    let mut faces = open();
    let picture = fitted(&photo(name), 640);
    let found = detect(&mut faces, name, &picture);
    assert_eq!(found.len(), 1, "{name}");
    let f = &found[0];
    assert_eq!((f.label.as_str(), f.landmarks.len()), ("face", 5));
    let (w, h) = (picture.width as f32, picture.height as f32);
    for (eye, landmark) in eyes.iter().zip(&f.landmarks) {
        let eye = [eye[0] / w, eye[1] / h];
        assert!(
            inside(eye, &f.bbox),
            "{name}: eye {eye:?} outside {:?}",
            f.bbox
        );
        let off = ((eye[0] - landmark[0]).powi(2) + (eye[1] - landmark[1]).powi(2)).sqrt();
        assert!(
            off < 0.03,
            "{name}: eye landmark {landmark:?} is {off} from {eye:?}"
        );
    }
    let area = (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]);
    assert!(
        area < 0.2,
        "{name}: face box {:?} is most of the picture",
        f.bbox
    );
}

#[test]
fn grace_hopper_has_one_face_around_her_eyes() {
    check_portrait("grace_hopper.jpg", [[222.0, 189.0], [301.0, 186.0]]);
}

#[test]
fn the_astronaut_has_one_face_around_her_eyes() {
    check_portrait("astronaut.png", [[205.0, 100.0], [249.0, 101.0]]);
}

/// Exactly `count` faces, each centred inside a ground-truth person.
fn check_voc(id: &str, count: usize) {
    let mut faces = open();
    let found = detect(&mut faces, id, &fitted(&voc_photo(id), 640));
    let people: Vec<[f32; 4]> = voc_boxes(id)
        .into_iter()
        .filter(|(c, _)| c == "person")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(found.len(), count, "{id}: {} people", people.len());
    for f in &found {
        let centre = [(f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0];
        assert!(
            people.iter().any(|p| inside(centre, p)),
            "{id}: face at {:?}",
            f.bbox
        );
    }
}

#[test]
fn voc_two_people_on_the_floor_show_two_faces() {
    check_voc("2011_000003", 2);
}

/// The fourth person is a head 11 px wide behind the sofa: it scores 0.19.
#[test]
fn voc_three_girls_on_a_sofa_show_three_faces() {
    check_voc("2011_000006", 3);
}

#[test]
fn no_faces_on_buses_a_cup_blank_or_noise() {
    let mut faces = open();
    let pictures = [
        ("2011_000025", fitted(&voc_photo("2011_000025"), 640)),
        ("coffee.png", fitted(&photo("coffee.png"), 640)),
        ("grey 640×360", Picture::grey(640, 360)),
        ("noise 640×480", Picture::noise(640, 480)),
        ("noise 416×416", Picture::noise(416, 416)),
    ];
    for (name, picture) in &pictures {
        let found = detect(&mut faces, name, picture);
        assert!(found.is_empty(), "{name}: {} faces", found.len());
    }
}

#[test]
fn faces_carry_the_frame_time() {
    let mut faces = open();
    let picture = fitted(&photo("astronaut.png"), 640);
    let found = faces.detect(&picture.frame(3.25)).expect("detect");
    assert!(!found.is_empty() && found.iter().all(|d| d.pts_s == 3.25));
}
