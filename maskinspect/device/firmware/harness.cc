// Runs one int8 model in OpenMV's own TensorFlow Lite Micro library on an emulated Cortex-M7
// (QEMU mps2-an500): prepare it as the firmware would, invoke it on the given input frames,
// and report outputs, the arena it needs and the instructions each operator takes.
//
// Output, one record per line on the semihosting console (parsed by maskinspect/firmware.py):
//   LOG <text>                     what the library printed (its error messages)
//   ERROR <stage> <status>         AllocateTensors or Invoke failed; exit code 2
//   ALLOCATED arena_used=<bytes>
//   FRAME <i> ticks=<t> out=<v0>,<v1>,...
//   OP <index> <name> ticks=<t>    per operator of the first frame's invoke
//   ARENA smallest=<bytes>
// Ticks are of the CMSDK timer at 25 MHz; under `-icount shift=0` one instruction is 1 ns,
// so one tick is 40 instructions.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <new>

#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "firmware_ops.h"  // generated per library: the firmware's ops it provides

// The model and the input frames (int8, one after another), from a generated file per model.
extern const uint8_t g_model[];
extern const int8_t g_inputs[];
extern const int g_input_count;
extern const int g_input_bytes;

extern "C" void semihost_write(const char* text);

namespace {

constexpr size_t kArenaMax = 3u << 20;
alignas(16) uint8_t g_arena[kArenaMax];
alignas(16) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

struct Timer {  // CMSDK APB timer 0: a 32-bit down-counter at the 25 MHz peripheral clock
  volatile uint32_t ctrl, value, reload, intstatus;
};
Timer* const kTimer = reinterpret_cast<Timer*>(0x40000000);

void start_timer() {
  kTimer->ctrl = 0;
  kTimer->reload = 0xFFFFFFFFu;
  kTimer->value = 0xFFFFFFFFu;
  kTimer->ctrl = 1;
}
uint32_t now() { return kTimer->value; }

void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt, ...) {
  char line[256];
  va_list args;
  va_start(args, fmt);
  vsnprintf(line, sizeof line, fmt, args);
  va_end(args);
  semihost_write(line);
}

bool g_quiet = false;  // the arena search fails on purpose: its messages are not the model's

void log_from_library(const char* text) {
  // The library prints its messages in pieces; each piece becomes one LOG record.
  if (g_quiet) return;
  char line[300];
  snprintf(line, sizeof line, "LOG %s\n", text);
  for (char* c = line + 4; *c && c[1]; ++c) {
    if (*c == '\n' || *c == '\r') *c = ' ';
  }
  semihost_write(line);
}

// Instruction ticks per operator, recorded around each kernel's Eval by the interpreter.
class OpTimer : public tflite::MicroProfilerInterface {
 public:
  static constexpr int kMaxOps = 256;
  uint32_t BeginEvent(const char* tag) override {
    if (count_ < kMaxOps) {
      tags_[count_] = tag;
      start_[count_] = now();
    }
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle < kMaxOps) ticks_[handle] = start_[handle] - now();
  }
  void reset() { count_ = 0; }
  void report() const {
    for (uint32_t i = 0; i < count_ && i < kMaxOps; ++i) say("OP %lu %s ticks=%lu\n", (unsigned long)i, tags_[i], (unsigned long)ticks_[i]);
  }

 private:
  const char* tags_[kMaxOps];
  uint32_t start_[kMaxOps];
  uint32_t ticks_[kMaxOps];
  uint32_t count_ = 0;
};

OpTimer g_op_timer;

using Resolver = tflite::MicroMutableOpResolver<kFirmwareOpCount>;

tflite::MicroInterpreter* make_interpreter(const tflite::Model* model, const Resolver& resolver, size_t arena,
                                           tflite::MicroProfilerInterface* profiler) {
  return new (g_interpreter_storage) tflite::MicroInterpreter(model, resolver, g_arena, arena, nullptr, profiler);
}

bool runs_in(const tflite::Model* model, const Resolver& resolver, size_t arena) {
  tflite::MicroInterpreter* interpreter = make_interpreter(model, resolver, arena, nullptr);
  bool ok = interpreter->AllocateTensors() == kTfLiteOk;
  if (ok) {
    memcpy(interpreter->input(0)->data.int8, g_inputs, g_input_bytes);
    ok = interpreter->Invoke() == kTfLiteOk;
  }
  interpreter->~MicroInterpreter();
  return ok;
}

}  // namespace

int main() {
  RegisterDebugLogCallback(log_from_library);
  start_timer();
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    say("ERROR schema %lu\n", (unsigned long)model->version());
    return 2;
  }
  static Resolver resolver;
  register_firmware_ops(resolver);

  tflite::MicroInterpreter* interpreter = make_interpreter(model, resolver, kArenaMax, &g_op_timer);
  TfLiteStatus status = interpreter->AllocateTensors();
  if (status != kTfLiteOk) {
    say("ERROR allocate %d\n", (int)status);
    return 2;
  }
  TfLiteTensor* input = interpreter->input(0);
  TfLiteTensor* output = interpreter->output(0);
  if (input->type != kTfLiteInt8 || output->type != kTfLiteInt8 || input->bytes != (size_t)g_input_bytes) {
    say("ERROR tensors input_type=%d output_type=%d input_bytes=%lu expected=%d\n", (int)input->type,
        (int)output->type, (unsigned long)input->bytes, g_input_bytes);
    return 2;
  }
  say("ALLOCATED arena_used=%lu\n", (unsigned long)interpreter->arena_used_bytes());

  for (int frame = 0; frame < g_input_count; ++frame) {
    memcpy(input->data.int8, g_inputs + frame * g_input_bytes, g_input_bytes);
    g_op_timer.reset();
    uint32_t start = now();
    status = interpreter->Invoke();
    uint32_t ticks = start - now();
    if (status != kTfLiteOk) {
      say("ERROR invoke %d\n", (int)status);
      return 2;
    }
    char values[200];
    int used = 0;
    for (size_t i = 0; i < output->bytes && used < (int)sizeof values - 8; ++i) {
      used += snprintf(values + used, sizeof values - used, "%s%d", i ? "," : "", output->data.int8[i]);
    }
    say("FRAME %d ticks=%lu out=%s\n", frame, (unsigned long)ticks, values);
    if (frame == 0) g_op_timer.report();
  }
  size_t used = interpreter->arena_used_bytes();
  interpreter->~MicroInterpreter();

  // The smallest arena the firmware's library prepares and runs the model in (16-byte steps).
  g_quiet = true;
  for (size_t arena = used & ~size_t(15); arena <= used + 1024; arena += 16) {
    if (runs_in(model, resolver, arena)) {
      say("ARENA smallest=%lu\n", (unsigned long)arena);
      return 0;
    }
  }
  say("ERROR arena %lu\n", (unsigned long)used);
  return 2;
}
