//! NanoDet on real photos (from packages that scripts/setup.sh installs) and
//! on pictures of nothing. Prints what it found, for the record.

mod common;

use common::{Picture, fitted, host_context, iou, photo, voc_boxes, voc_photo};
use vx_plugin_api::Detection;
use vx_plugin_objects::Objects;

fn open() -> Objects {
    Objects::open(&host_context()).expect("nanodet opens")
}

fn detect(objects: &mut Objects, name: &str, picture: &Picture) -> Vec<Detection> {
    let found = objects.detect(&picture.frame(0.0)).expect("detect");
    let list: Vec<String> = found
        .iter()
        .map(|d| format!("{} {:.2} {:.2?}", d.label, d.score, d.bbox))
        .collect();
    eprintln!("{name} ({}×{}): {list:#?}", picture.width, picture.height);
    found
}

fn labels(found: &[Detection]) -> Vec<&str> {
    found.iter().map(|d| d.label.as_str()).collect()
}

/// For each class that must be found: it is, each of its boxes lies on a
/// ground-truth box of that class, and the best placed one closely so.
fn check_voc(id: &str, must_find: &[&str], min_boxes: usize) {
    let mut objects = open();
    let found = detect(&mut objects, id, &fitted(&voc_photo(id), 640));
    let truth = voc_boxes(id);
    for &class in must_find {
        let boxes: Vec<&Detection> = found.iter().filter(|d| d.label == class).collect();
        assert!(
            boxes.len() >= min_boxes,
            "{id}: {class} ×{} in {:?}",
            boxes.len(),
            labels(&found)
        );
        let overlaps: Vec<f32> = boxes
            .iter()
            .map(|d| {
                truth
                    .iter()
                    .filter(|(c, _)| c == class)
                    .map(|(_, t)| iou(&d.bbox, t))
                    .fold(0.0, f32::max)
            })
            .collect();
        eprintln!("{id}: {class} boxes' best IoU with ground truth: {overlaps:.2?}");
        assert!(
            overlaps.iter().all(|&o| o >= 0.35),
            "{id}: a {class} box is off: {overlaps:?}"
        );
        assert!(
            overlaps.iter().any(|&o| o >= 0.75),
            "{id}: no {class} box is close: {overlaps:?}"
        );
    }
}

#[test]
fn voc_people_on_the_floor_are_found_in_place() {
    check_voc("2011_000003", &["person"], 2);
}

#[test]
fn voc_people_on_a_sofa_are_found_in_place() {
    check_voc("2011_000006", &["person"], 3);
}

#[test]
fn voc_buses_are_found_in_place() {
    check_voc("2011_000025", &["bus"], 2);
}

#[test]
fn portraits_show_a_person_in_the_middle() {
    let mut objects = open();
    for name in ["grace_hopper.jpg", "astronaut.png"] {
        let found = detect(&mut objects, name, &fitted(&photo(name), 640));
        let person = found
            .iter()
            .find(|d| d.label == "person")
            .unwrap_or_else(|| panic!("{name}: no person in {:?}", labels(&found)));
        let [x0, y0, x1, y1] = person.bbox;
        assert!(
            x0 < 0.5 && 0.5 < x1 && y0 < 0.5 && 0.5 < y1,
            "{name}: person at {:?}",
            person.bbox
        );
        assert!(person.score >= 0.6, "{name}: person only {}", person.score);
    }
}

#[test]
fn the_coffee_photo_shows_a_cup_and_nobody() {
    let mut objects = open();
    let found = detect(
        &mut objects,
        "coffee.png",
        &fitted(&photo("coffee.png"), 640),
    );
    let l = labels(&found);
    assert_eq!(l.first(), Some(&"cup"), "{l:?}");
    assert!(!l.contains(&"person"), "{l:?}");
}

#[test]
fn blank_and_noise_frames_show_nothing() {
    let mut objects = open();
    for (name, picture) in [
        ("grey 640×360", Picture::grey(640, 360)),
        ("noise 640×480", Picture::noise(640, 480)),
        ("noise 480×640", Picture::noise(480, 640)),
    ] {
        let found = detect(&mut objects, name, &picture);
        assert!(found.is_empty(), "{name}: {:?}", labels(&found));
    }
}

#[test]
fn detections_carry_the_frame_time() {
    let mut objects = open();
    let picture = fitted(&photo("astronaut.png"), 640);
    let found = objects.detect(&picture.frame(12.5)).expect("detect");
    assert!(!found.is_empty() && found.iter().all(|d| d.pts_s == 12.5));
}
