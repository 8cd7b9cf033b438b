//! Tesseract 5 through its C API (libtesseract), English, LSTM engine.
//!
//! The whole frame goes in as RGB; Tesseract finds the lines itself
//! (page segmentation [`PAGE_SEG_MODE`]) and each text line comes back with
//! its box and confidence. It uses OpenMP, so `OMP_THREAD_LIMIT` in the
//! environment caps its threads.

use std::ffi::{CStr, c_char, c_float, c_int};
use std::ptr::NonNull;

use vx_plugin_api::Frame;

use crate::Line;

/// Tesseract's "fully automatic page segmentation" (`--psm 3`): text may be
/// anywhere in a video frame, in several blocks. (On the test frames, each
/// one block of lines, psm 3, 6 and 11 all read 100 %; on captions over a
/// picture 57, 69 and 54 %.)
const PAGE_SEG_MODE: c_int = 3;
/// `RIL_TEXTLINE` in `TessPageIteratorLevel`.
const TEXTLINE: c_int = 2;
/// Lines Tesseract is less sure of than this (0–100) are dropped, the same
/// bar as PP-OCR's. With psm 3 a noise frame gives no lines even without
/// it; with psm 6 or 11 it gives symbols at 0–35.
const MIN_CONFIDENCE: f32 = 50.0;

#[repr(C)]
struct TessBaseApi {
    _private: [u8; 0],
}
#[repr(C)]
struct TessResultIterator {
    _private: [u8; 0],
}
#[repr(C)]
struct TessPageIterator {
    _private: [u8; 0],
}

#[link(name = "tesseract")]
unsafe extern "C" {
    fn TessBaseAPICreate() -> *mut TessBaseApi;
    fn TessBaseAPIDelete(handle: *mut TessBaseApi);
    fn TessBaseAPIInit3(
        handle: *mut TessBaseApi,
        datapath: *const c_char,
        language: *const c_char,
    ) -> c_int;
    fn TessBaseAPISetPageSegMode(handle: *mut TessBaseApi, mode: c_int);
    fn TessBaseAPISetVariable(
        handle: *mut TessBaseApi,
        name: *const c_char,
        value: *const c_char,
    ) -> c_int;
    fn TessBaseAPISetImage(
        handle: *mut TessBaseApi,
        imagedata: *const u8,
        width: c_int,
        height: c_int,
        bytes_per_pixel: c_int,
        bytes_per_line: c_int,
    );
    fn TessBaseAPIRecognize(handle: *mut TessBaseApi, monitor: *mut std::ffi::c_void) -> c_int;
    fn TessBaseAPIGetIterator(handle: *mut TessBaseApi) -> *mut TessResultIterator;
    fn TessBaseAPIClear(handle: *mut TessBaseApi);
    fn TessResultIteratorDelete(handle: *mut TessResultIterator);
    fn TessResultIteratorNext(handle: *mut TessResultIterator, level: c_int) -> c_int;
    fn TessResultIteratorGetUTF8Text(
        handle: *const TessResultIterator,
        level: c_int,
    ) -> *mut c_char;
    fn TessResultIteratorConfidence(handle: *const TessResultIterator, level: c_int) -> c_float;
    fn TessResultIteratorGetPageIteratorConst(
        handle: *const TessResultIterator,
    ) -> *const TessPageIterator;
    fn TessPageIteratorBoundingBox(
        handle: *const TessPageIterator,
        level: c_int,
        left: *mut c_int,
        top: *mut c_int,
        right: *mut c_int,
        bottom: *mut c_int,
    ) -> c_int;
    fn TessDeleteText(text: *const c_char);
}

/// One initialised Tesseract instance; not shared between threads.
pub struct Tesseract {
    api: NonNull<TessBaseApi>,
}

impl Tesseract {
    /// Loads the English model from Tesseract's default tessdata folder
    /// (or `TESSDATA_PREFIX`).
    pub fn new() -> Result<Self, String> {
        // SAFETY: no preconditions; returns an owned handle or null.
        let api = NonNull::new(unsafe { TessBaseAPICreate() }).ok_or("TessBaseAPICreate failed")?;
        let this = Self { api };
        // SAFETY: the handle is live; a null datapath means the default, and
        // the language is a NUL-terminated string that outlives the call.
        let rc = unsafe { TessBaseAPIInit3(this.api.as_ptr(), std::ptr::null(), c"eng".as_ptr()) };
        if rc != 0 {
            return Err(
                "cannot load Tesseract's English data (is tesseract-ocr-eng installed?)".into(),
            );
        }
        // SAFETY: the handle is live and initialised; 3 is a valid mode; the
        // variable's name and value are NUL-terminated strings.
        unsafe {
            TessBaseAPISetPageSegMode(this.api.as_ptr(), PAGE_SEG_MODE);
            // Its notes ("Estimating resolution as …") would go to stderr.
            TessBaseAPISetVariable(
                this.api.as_ptr(),
                c"debug_file".as_ptr(),
                c"/dev/null".as_ptr(),
            );
        }
        Ok(this)
    }

    /// The lines of text in `frame`, in Tesseract's reading order.
    pub fn read(&mut self, frame: &Frame<'_>) -> Result<Vec<Line>, String> {
        if frame.width == 0 || frame.height == 0 {
            return Ok(vec![]);
        }
        let (w, h, stride) = (
            frame.width as usize,
            frame.height as usize,
            frame.stride as usize,
        );
        if frame.rgb.len() < stride * h.saturating_sub(1) + w * 3 || stride < w * 3 {
            return Err(format!("frame buffer too small for {w}×{h}"));
        }
        let dims = [frame.width, frame.height, frame.stride].map(c_int::try_from);
        let [Ok(cw), Ok(ch), Ok(cs)] = dims else {
            return Err(format!("frame too large for Tesseract: {w}×{h}"));
        };
        let api = self.api.as_ptr();
        // SAFETY: the buffer holds `h` rows of `stride` bytes with `w` RGB
        // pixels each (checked above); "Tesseract takes its own copy of the
        // image" (baseapi.h), so the borrow may end after the call.
        unsafe { TessBaseAPISetImage(api, frame.rgb.as_ptr(), cw, ch, 3, cs) };
        // SAFETY: an image is set; a null monitor is allowed.
        if unsafe { TessBaseAPIRecognize(api, std::ptr::null_mut()) } != 0 {
            // SAFETY: the handle is live.
            unsafe { TessBaseAPIClear(api) };
            return Err("Tesseract failed to recognise the frame".into());
        }
        let mut lines = vec![];
        // SAFETY: recognition ran; the iterator is ours to delete (or null
        // when nothing was found) and is deleted before the next SetImage.
        let it = unsafe { TessBaseAPIGetIterator(api) };
        if !it.is_null() {
            loop {
                // SAFETY: `it` is a live iterator positioned on a text line.
                if let Some(line) =
                    unsafe { current_line(it, frame.width as f32, frame.height as f32) }
                {
                    lines.push(line);
                }
                // SAFETY: as above.
                if unsafe { TessResultIteratorNext(it, TEXTLINE) } == 0 {
                    break;
                }
            }
            // SAFETY: `it` came from TessBaseAPIGetIterator and is not used again.
            unsafe { TessResultIteratorDelete(it) };
        }
        // SAFETY: the handle is live; frees the copied image and results.
        unsafe { TessBaseAPIClear(api) };
        Ok(lines)
    }
}

/// The text line the iterator is on, if it has confident text.
///
/// # Safety
/// `it` must be a live result iterator.
unsafe fn current_line(it: *mut TessResultIterator, fw: f32, fh: f32) -> Option<Line> {
    // SAFETY: the caller's contract; the text is ours to free with TessDeleteText.
    let raw = unsafe { TessResultIteratorGetUTF8Text(it, TEXTLINE) };
    if raw.is_null() {
        return None;
    }
    // SAFETY: a non-null result is a NUL-terminated string, freed right after copying.
    let text = unsafe { CStr::from_ptr(raw) }
        .to_string_lossy()
        .trim()
        .to_owned();
    // SAFETY: `raw` came from Tesseract and is not used again.
    unsafe { TessDeleteText(raw) };
    // SAFETY: the caller's contract.
    let confidence = unsafe { TessResultIteratorConfidence(it, TEXTLINE) };
    if text.is_empty() || confidence < MIN_CONFIDENCE {
        return None;
    }
    let (mut l, mut t, mut r, mut b) = (0, 0, 0, 0);
    // SAFETY: the page iterator is borrowed from `it`; the four outputs are
    // valid for writes.
    let found = unsafe {
        let page = TessResultIteratorGetPageIteratorConst(it);
        TessPageIteratorBoundingBox(page, TEXTLINE, &mut l, &mut t, &mut r, &mut b)
    };
    let bbox = if found != 0 {
        [l as f32 / fw, t as f32 / fh, r as f32 / fw, b as f32 / fh]
    } else {
        [0.0, 0.0, 1.0, 1.0]
    };
    Some(Line {
        text,
        score: confidence / 100.0,
        bbox,
    })
}

impl Drop for Tesseract {
    fn drop(&mut self) {
        // SAFETY: the handle came from TessBaseAPICreate and is not used
        // again; Delete also ends the instance.
        unsafe { TessBaseAPIDelete(self.api.as_ptr()) };
    }
}
