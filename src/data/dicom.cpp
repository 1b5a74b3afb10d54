/* DICOM images and series through GDCM (Debian's libgdcm-dev), behind the C
 * API of medrobust.h. GDCM rather than DCMTK because Debian's DCMTK has no
 * JPEG 2000 decoder and GDCM decodes every transfer syntax the clinic sends
 * (little/big endian, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS,
 * JPEG 2000) with no codec registration. This is the project's one C++ file:
 * GDCM is C++, and everything it throws stops here.
 *
 * What is ours: the header checks before any pixel buffer is allocated
 * (dimensions, samples, bits, the limits), Bits Stored masking and sign
 * extension, Rescale Slope/Intercept to modality units (HU for CT),
 * MONOCHROME1 inversion, YBR to RGB, and series assembly (one Series
 * Instance UID, slices sorted along the normal of their orientation by Image
 * Position Patient, equal spacing checked). */
#include <gdcmAttribute.h>
#include <gdcmDirectory.h>
#include <gdcmImageReader.h>
#include <gdcmImageWriter.h>
#include <gdcmTrace.h>
#include <gdcmUIDGenerator.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "medrobust.h"

namespace {

/* One decoded image file: frames x rows x cols x samples in modality units. */
struct Frames {
  int cols = 0, rows = 0, frames = 0, samples = 1;
  double spacing[3] = {1, 1, 1}, origin[3] = {0, 0, 0}, direction[6] = {1, 0, 0, 0, 1, 0};
  double slope = 1, intercept = 0;
  std::string modality, photometric, syntax, series;
  std::vector<float> pixels; /* (frame, sample, row, col) */
};

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

std::string string_of(const gdcm::DataSet &ds, uint16_t group, uint16_t element) {
  const gdcm::Tag tag(group, element);
  if (!ds.FindDataElement(tag)) return "";
  const gdcm::ByteValue *bv = ds.GetDataElement(tag).GetByteValue();
  if (!bv || !bv->GetPointer()) return "";
  return trimmed(std::string(bv->GetPointer(), bv->GetLength()));
}

/* stored sample i (of bits_allocated) as an integer with only its bits_stored low bits,
 * sign-extended when the pixel representation is signed. GDCM hands the buffer in host
 * (little) order, except that it swaps big endian data in 16-bit words: a 32-bit sample's
 * halves then come crossed (measured on pydicom's rtdose_expb.dcm against rtdose.dcm). */
long long stored_value(const unsigned char *buf, size_t i, int bytes, int bits_stored,
                       bool is_signed, bool halves_crossed) {
  unsigned long long raw = 0;
  std::memcpy(&raw, buf + i * bytes, bytes);
  if (bytes == 4 && halves_crossed) raw = ((raw & 0xffff) << 16) | (raw >> 16);
  if (bits_stored < 64) raw &= (1ULL << bits_stored) - 1;
  if (is_signed && bits_stored < 64 && (raw >> (bits_stored - 1)) & 1)
    return (long long)(raw | ~((1ULL << bits_stored) - 1));
  return (long long)raw;
}

Status read_file(const char *path, Frames *out, MrError *err) {
  gdcm::ImageReader reader;
  reader.SetFileName(path);
  if (!reader.Read())
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: not a readable DICOM image", path);
  const gdcm::Image &image = reader.GetImage();
  const gdcm::DataSet &ds = reader.GetFile().GetDataSet();
  const unsigned *dims = image.GetDimensions();
  const unsigned ndim = image.GetNumberOfDimensions();
  const gdcm::PixelFormat &pf = image.GetPixelFormat();
  const int samples = pf.GetSamplesPerPixel(), allocated = pf.GetBitsAllocated(),
            stored = pf.GetBitsStored();
  if (!dims || ndim < 2 || ndim > 3)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: an image of %u dimensions", path, ndim);
  const unsigned long long cols = dims[0], rows = dims[1], frames = ndim == 3 ? dims[2] : 1;
  if (cols < 1 || rows < 1 || frames < 1 || cols > 65535 || rows > 65535 || frames > 65535)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %llu x %llu pixels in %llu frames", path, cols,
                        rows, frames);
  if (samples != 1 && samples != 3)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %d samples per pixel (1 or 3 read)", path,
                        samples);
  if ((allocated != 8 && allocated != 16 && allocated != 32) || stored < 1 || stored > allocated)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %d bits stored in %d allocated", path, stored,
                        allocated);
  const gdcm::PixelFormat::ScalarType scalar = pf.GetScalarType();
  const bool is_float =
      scalar == gdcm::PixelFormat::FLOAT32 || scalar == gdcm::PixelFormat::FLOAT64;
  if (is_float)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: float pixel data is not read", path);
  const MrLimits limits = mr_limits();
  const unsigned long long values = cols * rows * frames * samples;
  if (cols * rows > limits.image_pixels || values * sizeof(float) > limits.file_bytes)
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s: %llu x %llu pixels in %llu frames is over the limits (raise with "
                        "medrobust --max-megapixels or --max-file-gb)",
                        path, cols, rows, frames);
  const unsigned long long bytes = image.GetBufferLength();
  if (bytes != values * (allocated / 8))
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s: the decoded pixel data would be %llu bytes, not the %llu its "
                        "dimensions need",
                        path, bytes, values * (allocated / 8));
  /* native pixel data must be all in the file: GDCM pads a short element with zeros
   * (measured on pydicom's MR_truncated.dcm, 62 bytes short). A reader told to skip the
   * pixel data's value stands at its first byte (measured: byte 1500 of MR_small.dcm, whose
   * 8192 bytes of pixels end at 9692). The deflated syntax is checked by its inflation. */
  const gdcm::TransferSyntax &syntax = image.GetTransferSyntax();
  if (!syntax.IsEncapsulated() && syntax != gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian) {
    gdcm::Reader head;
    head.SetFileName(path);
    struct stat st;
    const std::set<gdcm::Tag> skip = {gdcm::Tag(0x7fe0, 0x0010)};
    if (head.ReadUpToTag(gdcm::Tag(0x7fe0, 0x0010), skip) && stat(path, &st) == 0) {
      const unsigned long long start = head.GetStreamCurrentPosition();
      const unsigned long long have =
          (unsigned long long)st.st_size > start ? st.st_size - start : 0;
      /* YBR_FULL_422 stores two samples per pixel, GDCM hands back three */
      const bool subsampled =
          image.GetPhotometricInterpretation() == gdcm::PhotometricInterpretation::YBR_FULL_422;
      const unsigned long long needed = subsampled ? bytes / 3 * 2 : bytes;
      /* a length field claiming more than the file holds is a broken file, even when the
       * pixels it needs are there */
      const gdcm::VL declared = ds.FindDataElement(gdcm::Tag(0x7fe0, 0x0010))
                                    ? ds.GetDataElement(gdcm::Tag(0x7fe0, 0x0010)).GetVL()
                                    : gdcm::VL(0);
      if (!declared.IsUndefined() && (unsigned long long)declared > have)
        return mr_error_set(err, STATUS_ERR_FORMAT,
                            "%s: its pixel data declares %llu bytes; the file holds %llu after it",
                            path, (unsigned long long)declared, have);
      if (have < needed)
        return mr_error_set(err, STATUS_ERR_FORMAT,
                            "%s: truncated: its pixel data holds %llu of the %llu bytes its "
                            "dimensions need",
                            path, have, needed);
    }
  }
  std::vector<unsigned char> buffer(bytes);
  if (!image.GetBuffer(reinterpret_cast<char *>(buffer.data())))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: its pixel data cannot be decoded (%s)", path,
                        gdcm::TransferSyntax::GetTSString(image.GetTransferSyntax()));
  out->cols = (int)cols, out->rows = (int)rows, out->frames = (int)frames, out->samples = samples;
  out->slope = image.GetSlope(), out->intercept = image.GetIntercept();
  if (!std::isfinite(out->slope) || out->slope == 0) out->slope = 1;
  if (!std::isfinite(out->intercept)) out->intercept = 0;
  const double *spacing = image.GetSpacing(), *origin = image.GetOrigin(),
               *direction = image.GetDirectionCosines();
  for (int k = 0; k < 3; k++) {
    if (spacing && std::isfinite(spacing[k]) && spacing[k] > 0) out->spacing[k] = spacing[k];
    if (origin && std::isfinite(origin[k])) out->origin[k] = origin[k];
  }
  for (int k = 0; k < 6; k++)
    if (direction && std::isfinite(direction[k])) out->direction[k] = direction[k];
  out->modality = string_of(ds, 0x0008, 0x0060);
  out->series = string_of(ds, 0x0020, 0x000E);
  out->syntax = gdcm::TransferSyntax::GetTSString(image.GetTransferSyntax());
  const gdcm::PhotometricInterpretation pi = image.GetPhotometricInterpretation();
  out->photometric = gdcm::PhotometricInterpretation::GetPIString(pi)
                         ? trimmed(gdcm::PhotometricInterpretation::GetPIString(pi))
                         : "";
  const bool is_signed = pf.GetPixelRepresentation() == 1;
  const int sample_bytes = allocated / 8;
  const size_t plane = (size_t)cols * rows;
  out->pixels.assign(values, 0.0f);
  /* planar configuration 1 keeps each colour in its own plane; GDCM hands 0 (interleaved) */
  const bool planar = samples == 3 && image.GetPlanarConfiguration() == 1;
  const bool monochrome1 = pi == gdcm::PhotometricInterpretation::MONOCHROME1;
  const bool big_endian = image.GetTransferSyntax() == gdcm::TransferSyntax::ExplicitVRBigEndian;
  const long long max_stored = is_signed ? (1LL << (stored - 1)) - 1 : (1LL << stored) - 1,
                  min_stored = is_signed ? -(1LL << (stored - 1)) : 0;
  for (size_t f = 0; f < frames; f++)
    for (int s = 0; s < samples; s++)
      for (size_t p = 0; p < plane; p++) {
        const size_t at = planar ? (f * samples + s) * plane + p : (f * plane + p) * samples + s;
        long long v = stored_value(buffer.data(), at, sample_bytes, stored, is_signed, big_endian);
        /* MONOCHROME1: the lowest value is white; flipped within the stored range so that
         * higher means brighter, as in every other image */
        if (monochrome1) v = max_stored + min_stored - v;
        const double unit = samples == 1 ? out->slope * v + out->intercept : (double)v;
        out->pixels[(f * samples + s) * plane + p] = (float)unit;
      }
  /* YBR_FULL (and YBR_FULL_422 once decoded) to RGB, ITU-R BT.601 full range (DICOM PS3.3
   * C.7.6.3.1.2), whatever the transfer syntax: GDCM's JPEG decoder hands YBR back as YBR
   * (measured on pydicom's SC_rgb_dcmtk_+eb+cy* and SC_rgb_jpeg_dcmtk files: within 0.6 of
   * the RLE original once converted, 92 off when not). YBR_RCT/ICT are JPEG 2000's, which
   * its decoder inverts itself. */
  if (samples == 3 && (out->photometric == "YBR_FULL" || out->photometric == "YBR_FULL_422")) {
    for (size_t f = 0; f < frames; f++) {
      float *y = &out->pixels[f * 3 * plane], *cb = y + plane, *cr = cb + plane;
      /* rounded and clipped to the stored range, as the standard's 8-bit RGB is */
      const double top = (double)max_stored, half = (double)(1LL << (stored - 1));
      auto clip = [top](double v) { return (float)std::fmin(top, std::fmax(0.0, std::round(v))); };
      for (size_t p = 0; p < plane; p++) {
        const double Y = y[p], B = cb[p] - half, R = cr[p] - half;
        y[p] = clip(Y + 1.402 * R);
        cb[p] = clip(Y - 0.344136 * B - 0.714136 * R);
        cr[p] = clip(Y + 1.772 * B);
      }
    }
  }
  return STATUS_OK;
}

void to_volume(const Frames &f, DicomVolume *out) {
  out->v.nx = f.cols, out->v.ny = f.rows, out->v.nz = f.frames;
  out->v.sx = f.spacing[0], out->v.sy = f.spacing[1], out->v.sz = f.spacing[2];
  out->channels = f.samples;
  out->slope = f.slope, out->intercept = f.intercept;
  std::memcpy(out->origin, f.origin, sizeof out->origin);
  std::memcpy(out->direction, f.direction, sizeof f.direction);
  const double *r = f.direction, *c = f.direction + 3;
  out->direction[6] = r[1] * c[2] - r[2] * c[1], out->direction[7] = r[2] * c[0] - r[0] * c[2];
  out->direction[8] = r[0] * c[1] - r[1] * c[0];
  /* voxel (x, y, z) to mm: origin + x sx row + y sy column + z sz normal, in DICOM's LPS;
   * NIfTI's RAS negates the first two axes */
  const double steps[3] = {f.spacing[0], f.spacing[1], f.spacing[2]};
  for (int a = 0; a < 3; a++) {
    const double sign = a < 2 ? -1.0 : 1.0;
    for (int k = 0; k < 3; k++)
      out->v.affine[4 * a + k] = sign * out->direction[3 * k + a] * steps[k];
    out->v.affine[4 * a + 3] = sign * f.origin[a];
  }
  out->v.has_affine = 1;
  std::snprintf(out->modality, sizeof out->modality, "%s", f.modality.c_str());
  std::snprintf(out->photometric, sizeof out->photometric, "%s", f.photometric.c_str());
  std::snprintf(out->transfer_syntax, sizeof out->transfer_syntax, "%s", f.syntax.c_str());
}

/* A series' slices sorted along the normal of their orientation by Image Position Patient,
 * not by file name: (position, index into slices). */
std::vector<std::pair<double, size_t>> slice_order(const std::vector<Frames> &slices) {
  const double *r = slices[0].direction, *c = slices[0].direction + 3;
  const double normal[3] = {r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2],
                            r[0] * c[1] - r[1] * c[0]};
  std::vector<std::pair<double, size_t>> order;
  for (size_t i = 0; i < slices.size(); i++) {
    const double *o = slices[i].origin;
    order.push_back({o[0] * normal[0] + o[1] * normal[1] + o[2] * normal[2], i});
  }
  std::sort(order.begin(), order.end());
  return order;
}

/* A series folder's files in name order. */
std::vector<std::string> series_files(const char *dir) {
  gdcm::Directory d;
  d.Load(dir, false);
  std::vector<std::string> files = d.GetFilenames();
  std::sort(files.begin(), files.end());
  return files;
}

Status read_series(const char *dir, DicomVolume *out, MrError *err) {
  std::vector<std::string> files = series_files(dir);
  if (files.empty()) return mr_error_set(err, STATUS_ERR_FORMAT, "%s: no files in the folder", dir);
  std::vector<Frames> slices;
  for (const std::string &file : files) {
    Frames f;
    Status s = read_file(file.c_str(), &f, err);
    if (s != STATUS_OK) return s;
    if (f.frames != 1)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: a multi-frame file (%d frames) inside a series folder", file.c_str(),
                          f.frames);
    if (!slices.empty()) {
      const Frames &first = slices.front();
      if (f.series != first.series)
        return mr_error_set(err, STATUS_ERR_FORMAT,
                            "%s: mixed series: %s belongs to another series than %s", dir,
                            file.c_str(), files.front().c_str());
      if (f.cols != first.cols || f.rows != first.rows || f.samples != first.samples)
        return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %s is %dx%d, the series %dx%d", dir,
                            file.c_str(), f.cols, f.rows, first.cols, first.rows);
    }
    slices.push_back(std::move(f));
    const size_t total = slices.size() * (size_t)slices[0].cols * slices[0].rows;
    if (total * sizeof(float) > mr_limits().file_bytes)
      return mr_error_set(err, STATUS_ERR_FORMAT, "%s: the series is over the size limit", dir);
  }
  const std::vector<std::pair<double, size_t>> order = slice_order(slices);
  double gap = slices.size() > 1 ? order[1].first - order[0].first : slices[0].spacing[2];
  for (size_t k = 1; k < order.size(); k++) {
    const double g = order[k].first - order[k - 1].first;
    if (!(g > 1e-4))
      return mr_error_set(err, STATUS_ERR_FORMAT, "%s: two slices at the same position (%g mm)",
                          dir, order[k].first);
    if (std::fabs(g - gap) > 0.01 * gap + 1e-3)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: inconsistent slice spacing: %g mm then %g mm at slice %zu", dir, gap,
                          g, k);
  }
  Frames volume = slices[order[0].second];
  volume.frames = (int)slices.size();
  volume.spacing[2] = gap > 0 ? gap : 1;
  const size_t per = (size_t)volume.cols * volume.rows * volume.samples;
  volume.pixels.resize(per * slices.size());
  for (size_t k = 0; k < order.size(); k++)
    std::memcpy(&volume.pixels[k * per], slices[order[k].second].pixels.data(),
                per * sizeof(float));
  to_volume(volume, out);
  out->v.data = static_cast<float *>(std::malloc(volume.pixels.size() * sizeof(float)));
  if (!out->v.data) return mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", dir);
  std::memcpy(out->v.data, volume.pixels.data(), volume.pixels.size() * sizeof(float));
  out->slices = (int)slices.size();
  return STATUS_OK;
}

Status read_any(const char *path, DicomVolume *out, MrError *err) {
  std::memset(out, 0, sizeof *out);
  gdcm::Trace::SetWarning(false), gdcm::Trace::SetError(false), gdcm::Trace::SetDebug(false);
  try {
    struct stat st;
    if (stat(path, &st) != 0) return mr_error_set(err, STATUS_ERR_IO, "%s: cannot be read", path);
    if (S_ISDIR(st.st_mode)) return read_series(path, out, err);
    Frames f;
    Status s = read_file(path, &f, err);
    if (s != STATUS_OK) return s;
    to_volume(f, out);
    out->slices = 1;
    out->v.data = static_cast<float *>(std::malloc(f.pixels.size() * sizeof(float)));
    if (!out->v.data) return mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", path);
    std::memcpy(out->v.data, f.pixels.data(), f.pixels.size() * sizeof(float));
    return STATUS_OK;
  } catch (const std::bad_alloc &) {
    dicom_volume_free(out);
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s: decoding it needs more memory than a file of its size justifies (a "
                        "length field larger than the file?)",
                        path);
  } catch (const std::exception &e) {
    dicom_volume_free(out);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: GDCM: %s", path, e.what());
  } catch (...) {
    dicom_volume_free(out);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: GDCM failed to read it", path);
  }
}

/* The reading process may take what the file can justify and no more: GDCM allocates what
 * a length field declares (measured: CT_small.dcm with its pixel data's length raised to
 * 4 GiB made it allocate and zero 4 GiB). The budget is the process as it stands, plus
 * 1 GiB, plus what its inflation limit lets the file grow to. */
void cap_memory(const char *path) {
  struct stat st;
  unsigned long long file = 0; /* a series folder: all its files */
  if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) file = (unsigned long long)st.st_size;
  if (DIR *d = opendir(path)) {
    while (const dirent *e = readdir(d)) {
      const std::string name = std::string(path) + "/" + e->d_name;
      if (stat(name.c_str(), &st) == 0 && S_ISREG(st.st_mode)) file += st.st_size;
    }
    closedir(d);
  }
  unsigned long long now = 0;
  if (FILE *f = std::fopen("/proc/self/statm", "r")) {
    unsigned long long pages = 0;
    if (std::fscanf(f, "%llu", &pages) == 1)
      now = pages * (unsigned long long)sysconf(_SC_PAGESIZE);
    std::fclose(f);
  }
  const double ratio = mr_limits().inflate_ratio > 0 ? mr_limits().inflate_ratio : 200;
  const unsigned long long budget = now + (1ULL << 30) + (unsigned long long)(file * ratio);
  const struct rlimit cap = {budget, budget};
  setrlimit(RLIMIT_AS, &cap);
}

/* What the reading process sends back before the voxels. */
struct Reply {
  Status status;
  char message[sizeof(MrError().msg)];
  DicomVolume volume; /* its data pointer meaningless here */
};

bool write_all(int fd, const void *data, size_t n) {
  const char *p = static_cast<const char *>(data);
  while (n) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= (size_t)w;
  }
  return true;
}

bool read_all(int fd, void *data, size_t n) {
  char *p = static_cast<char *>(data);
  while (n) {
    const ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r, n -= (size_t)r;
  }
  return true;
}

/* Forks the process GDCM works in (see dicom_read): the child, under path's memory cap and
 * with stderr silenced (GDCM's codecs print there), runs work(the pipe's write end) and
 * exits; the parent gets the read end and the child's pid. */
template <class Work>
Status in_child(const char *path, const char *what, Work work, int *fd, pid_t *pid, MrError *err) {
  int fds[2];
  if (pipe(fds) != 0)
    return mr_error_set(err, STATUS_ERR_IO, "%s: cannot start its %s (%s)", path, what,
                        std::strerror(errno));
  std::fflush(stdout), std::fflush(stderr);
  *pid = fork();
  if (*pid < 0) {
    close(fds[0]), close(fds[1]);
    return mr_error_set(err, STATUS_ERR_IO, "%s: cannot start its %s (%s)", path, what,
                        std::strerror(errno));
  }
  if (*pid == 0) {
    close(fds[0]);
    cap_memory(path);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDERR_FILENO);
    _exit(work(fds[1]) ? 0 : 1);
  }
  close(fds[1]);
  *fd = fds[0];
  return STATUS_OK;
}

/* The child's exit status, once it has ended. */
int reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

/* GDCM runs in a child process: Debian builds it with its assertions on, and a valid but
 * unusual file aborts it (measured: pydicom's SC_rgb_jpeg_app14_dcmd.dcm stops the process
 * in gdcmAttribute.h), as a hostile one may crash it. The child sends the volume through a
 * pipe; a child that dies is an error naming the file, never the end of a long run. */
extern "C" Status dicom_read(const char *path, DicomVolume *out, MrError *err) {
  std::memset(out, 0, sizeof *out);
  int fd = -1;
  pid_t pid = -1;
  const auto reader = [path](int to) {
    static Reply reply;
    MrError e = {};
    reply.status = read_any(path, &reply.volume, &e);
    std::memcpy(reply.message, e.msg, sizeof reply.message);
    const size_t n = (size_t)reply.volume.v.nx * reply.volume.v.ny * reply.volume.v.nz *
                     (reply.volume.channels ? reply.volume.channels : 1);
    return write_all(to, &reply, sizeof reply) &&
           (reply.status != STATUS_OK || write_all(to, reply.volume.v.data, n * sizeof(float)));
  };
  const Status started = in_child(path, "reader", reader, &fd, &pid, err);
  if (started != STATUS_OK) return started;
  Reply *reply = static_cast<Reply *>(std::calloc(1, sizeof(Reply)));
  Status s = reply ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  bool got = s == STATUS_OK && read_all(fd, reply, sizeof *reply);
  if (got && reply->status != STATUS_OK) {
    s = mr_error_set(err, reply->status, "%s", reply->message);
  } else if (got) {
    *out = reply->volume;
    out->v.data = nullptr;
    const unsigned long long n =
        (unsigned long long)out->v.nx * out->v.ny * out->v.nz * (unsigned long long)out->channels;
    /* the child checked the limits; the parent does not trust a reply it did not check */
    if (out->v.nx < 1 || out->v.ny < 1 || out->v.nz < 1 || out->channels < 1 ||
        n * sizeof(float) > mr_limits().file_bytes)
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: an impossible volume from its reader", path);
    if (s == STATUS_OK && !(out->v.data = static_cast<float *>(std::malloc(n * sizeof(float)))))
      s = mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", path);
    got = s == STATUS_OK && read_all(fd, out->v.data, n * sizeof(float));
  }
  close(fd);
  const int status = reap(pid);
  if (s == STATUS_OK && !got) {
    if (WIFSIGNALED(status))
      s = mr_error_set(err, STATUS_ERR_FORMAT,
                       "%s: GDCM failed on it (its reader stopped with signal %d): a malformed "
                       "file, or a feature GDCM does not handle",
                       path, WTERMSIG(status));
    else
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: its reader stopped before the end", path);
  }
  std::free(reply);
  if (s != STATUS_OK) dicom_volume_free(out);
  return s;
}

namespace {

/* A text element, padded to an even length as DICOM requires (UIDs with a NUL, text with a
 * space). */
void set_text(gdcm::DataSet &ds, uint16_t group, uint16_t element, gdcm::VR vr, std::string text) {
  if (text.size() % 2) text += vr == gdcm::VR::UI ? '\0' : ' ';
  gdcm::DataElement de(gdcm::Tag(group, element));
  de.SetVR(vr);
  de.SetByteValue(text.data(), (uint32_t)text.size());
  ds.Replace(de);
}

/* The child's side of dicom_write_derived. */
Status write_derived(const char *source, const Volume *values, const char *description,
                     const char *out_dir, MrError *err) {
  gdcm::Trace::SetWarning(false), gdcm::Trace::SetError(false), gdcm::Trace::SetDebug(false);
  struct stat st;
  if (stat(source, &st) != 0) return mr_error_set(err, STATUS_ERR_IO, "%s: cannot be read", source);
  const bool series = S_ISDIR(st.st_mode);
  const std::vector<std::string> files =
      series ? series_files(source) : std::vector<std::string>{source};
  std::vector<Frames> slices(files.size());
  size_t frames = 0;
  for (size_t i = 0; i < files.size(); i++) {
    const Status s = read_file(files[i].c_str(), &slices[i], err);
    if (s != STATUS_OK) return s;
    frames += (size_t)slices[i].frames;
    if (slices[i].samples != 1 || slices[i].photometric == "MONOCHROME1")
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: %s images are not written back as DICOM (write NIfTI)",
                          files[i].c_str(), slices[i].samples != 1 ? "colour" : "MONOCHROME1");
    if (slices[i].cols != values->nx || slices[i].rows != values->ny)
      return mr_error_set(err, STATUS_ERR_SHAPE, "%s: %dx%d now, %dx%d when read", files[i].c_str(),
                          slices[i].cols, slices[i].rows, values->nx, values->ny);
  }
  if (frames != (size_t)values->nz)
    return mr_error_set(err, STATUS_ERR_SHAPE, "%s: %zu slices now, %d when read", source, frames,
                        values->nz);
  if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
    return mr_error_set(err, STATUS_ERR_IO, "%s: %s", out_dir, std::strerror(errno));
  const std::vector<std::pair<double, size_t>> order =
      series ? slice_order(slices) : std::vector<std::pair<double, size_t>>{{0.0, 0}};
  gdcm::UIDGenerator uids;
  const std::string series_uid = uids.Generate();
  const size_t plane = (size_t)values->nx * values->ny;
  size_t z = 0; /* the volume's slice the next file starts at */
  for (const auto &ranked : order) {
    const std::string &file = files[ranked.second];
    const Frames &f = slices[ranked.second];
    const size_t n = plane * f.frames;
    /* the stored value moves by the change in stored units, truncated toward zero: no voxel
     * moves further than its change */
    std::vector<long long> stored(n);
    long long lo = 0, hi = 0;
    for (size_t p = 0; p < n; p++) {
      double change = (double)values->data[z * plane + p] - f.pixels[p];
      if (!std::isfinite(change)) change = 0; /* a NaN source voxel stays as it was stored */
      stored[p] = std::llround((f.pixels[p] - f.intercept) / f.slope) +
                  (long long)std::trunc(change / f.slope);
      lo = std::min(lo, stored[p]), hi = std::max(hi, stored[p]);
    }
    const bool is_signed = lo < 0;
    const long long min = is_signed ? -32768 : 0, max = is_signed ? 32767 : 65535;
    if (lo < min || hi > max)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: the attacked values need %lld..%lld stored, beyond 16 bits",
                          file.c_str(), lo, hi);
    std::vector<uint16_t> pixels(n);
    for (size_t p = 0; p < n; p++) pixels[p] = (uint16_t)(stored[p] & 0xffff);
    gdcm::ImageReader reader;
    reader.SetFileName(file.c_str());
    if (!reader.Read())
      return mr_error_set(err, STATUS_ERR_FORMAT, "%s: not a readable DICOM image", file.c_str());
    gdcm::File &dicom = reader.GetFile();
    const gdcm::TransferSyntax was =
        gdcm::TransferSyntax::GetTSType(string_of(dicom.GetHeader(), 0x0002, 0x0010).c_str());
    if (was.GetSwapCode() == gdcm::SwapCode::BigEndian)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: a big endian file is not written back as DICOM (write NIfTI)",
                          file.c_str());
    gdcm::Image &image = reader.GetImage();
    image.SetPhotometricInterpretation(gdcm::PhotometricInterpretation::MONOCHROME2);
    image.SetPixelFormat(
        gdcm::PixelFormat(is_signed ? gdcm::PixelFormat::INT16 : gdcm::PixelFormat::UINT16));
    image.SetTransferSyntax(was == gdcm::TransferSyntax::ImplicitVRLittleEndian
                                ? gdcm::TransferSyntax::ImplicitVRLittleEndian
                                : gdcm::TransferSyntax::ExplicitVRLittleEndian);
    gdcm::DataElement data(gdcm::Tag(0x7fe0, 0x0010));
    data.SetVR(gdcm::VR::OW);
    data.SetByteValue(reinterpret_cast<const char *>(pixels.data()), (uint32_t)(2 * n));
    image.SetDataElement(data);
    image.SetSlope(f.slope), image.SetIntercept(f.intercept);
    gdcm::DataSet &ds = dicom.GetDataSet();
    set_text(ds, 0x0020, 0x000E, gdcm::VR::UI, series_uid);
    set_text(ds, 0x0008, 0x0018, gdcm::VR::UI, uids.Generate());
    set_text(ds, 0x0008, 0x0008, gdcm::VR::CS, "DERIVED\\SECONDARY");
    set_text(ds, 0x0008, 0x103E, gdcm::VR::LO, std::string(description).substr(0, 64));
    set_text(ds, 0x0008, 0x2111, gdcm::VR::ST, description);
    dicom.GetHeader().Clear(); /* the writer makes it anew: the new UIDs, the new syntax */
    const size_t slash = file.find_last_of('/');
    const std::string name =
        std::string(out_dir) + "/" + (slash == std::string::npos ? file : file.substr(slash + 1));
    gdcm::ImageWriter writer;
    writer.SetFileName(name.c_str());
    writer.SetFile(dicom);
    writer.SetImage(image);
    if (!writer.Write())
      return mr_error_set(err, STATUS_ERR_IO, "%s: GDCM could not write it", name.c_str());
    z += (size_t)f.frames;
  }
  return STATUS_OK;
}

}  // namespace

extern "C" Status dicom_write_derived(const char *source, const Volume *values,
                                      const char *description, const char *out_dir, MrError *err) {
  int fd = -1;
  pid_t pid = -1;
  /* GDCM reads the source again: it runs where it cannot take us down */
  const auto writer = [&](int to) {
    static Reply reply;
    MrError e = {};
    try {
      reply.status = write_derived(source, values, description, out_dir, &e);
    } catch (...) {
      reply.status = mr_error_set(&e, STATUS_ERR_FORMAT, "%s: GDCM failed to rewrite it", source);
    }
    std::memcpy(reply.message, e.msg, sizeof reply.message);
    return write_all(to, &reply, sizeof reply);
  };
  const Status started = in_child(source, "writer", writer, &fd, &pid, err);
  if (started != STATUS_OK) return started;
  Reply *reply = static_cast<Reply *>(std::calloc(1, sizeof(Reply)));
  Status s = reply ? STATUS_OK : mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  const bool got = s == STATUS_OK && read_all(fd, reply, sizeof *reply);
  close(fd);
  reap(pid);
  if (got && reply->status != STATUS_OK)
    s = mr_error_set(err, reply->status, "%s", reply->message);
  else if (s == STATUS_OK && !got)
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: GDCM failed while writing its derived series",
                     source);
  std::free(reply);
  return s;
}

extern "C" void dicom_volume_free(DicomVolume *d) {
  std::free(d->v.data);
  std::memset(d, 0, sizeof *d);
}
