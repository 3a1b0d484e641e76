// A C++ host of loopvm: RAII handles over the C API, one compiled program
// called from two std::threads at once, results printed, errors as
// exceptions.
//
//   c++ -std=c++17 host.cpp -I capi/include -L target/debug -lloopvm_capi -pthread
//       -Wl,-rpath,target/debug -o host
//   ./host examples/embed/decay.lb
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loopvm.h"

namespace lv {

// A failed call: the status and loopvm's message.
struct Error : std::runtime_error {
    loopvm_status status;
    Error(loopvm_status s, const std::string &m) : std::runtime_error(m), status(s) {}
};

// Throws on failure, freeing the C error. Call it as a separate statement
// after the call: `check(loopvm_x(..., &err), err)` would be wrong, since C++
// may read `err` before the call writes it.
inline void check(loopvm_status st, loopvm_error *err) {
    if (st == LOOPVM_OK) return;
    std::string msg = loopvm_error_message(err);
    loopvm_error_free(err);
    throw Error(st, std::string(loopvm_status_name(st)) + ": " + msg);
}

struct ProgramFree { void operator()(loopvm_program *p) const { loopvm_program_free(p); } };
struct TensorFree { void operator()(loopvm_tensor *t) const { loopvm_tensor_free(t); } };
struct ResultFree { void operator()(loopvm_result *r) const { loopvm_result_free(r); } };

using Tensor = std::unique_ptr<loopvm_tensor, TensorFree>;
using Result = std::unique_ptr<loopvm_result, ResultFree>;

// A float tensor copied in from a vector.
inline Tensor f32(const std::vector<size_t> &shape, const std::vector<float> &data) {
    loopvm_tensor *t = nullptr;
    loopvm_error *err = nullptr;
    loopvm_status st =
        loopvm_tensor_new(LOOPVM_F32, shape.size(), shape.data(), data.data(), data.size() * sizeof(float), &t, &err);
    check(st, err);
    return Tensor(t);
}

// The elements of a result tensor, copied out.
inline std::vector<float> to_vector(const loopvm_tensor *t) {
    if (loopvm_tensor_dtype(t) != LOOPVM_F32) throw std::runtime_error("not an f32 tensor");
    std::vector<float> v(loopvm_tensor_numel(t));
    loopvm_error *err = nullptr;
    loopvm_status st = loopvm_tensor_copy_data(t, v.data(), v.size() * sizeof(float), &err);
    check(st, err);
    return v;
}

// A compiled program: immutable, so `call` may run on many threads at once.
class Program {
  public:
    static Program load(const std::string &path) {
        loopvm_program *p = nullptr;
        loopvm_error *err = nullptr;
        loopvm_status st = loopvm_program_load(path.c_str(), &p, &err);
        check(st, err);
        return Program(p);
    }
    Result call(const char *name, const std::vector<const loopvm_tensor *> &args, loopvm_tier tier) const {
        loopvm_call_options opts = loopvm_call_options_default();
        opts.tier = tier;
        loopvm_result *r = nullptr;
        loopvm_error *err = nullptr;
        loopvm_status st = loopvm_call(p_.get(), name, args.data(), args.size(), &opts, &r, &err);
        check(st, err);
        return Result(r);
    }
    std::string signature(size_t i) const { return loopvm_program_function_signature(p_.get(), i); }

  private:
    explicit Program(loopvm_program *p) : p_(p) {}
    std::unique_ptr<loopvm_program, ProgramFree> p_;
};

}  // namespace lv

static std::string show(const std::vector<float> &v) {
    std::ostringstream s;
    s << "[";
    for (size_t i = 0; i < v.size(); i++) s << (i ? ", " : "") << v[i];
    s << "]";
    return s.str();
}

int main(int argc, char **argv) {
    std::string path = argc > 1 ? argv[1] : "examples/embed/decay.lb";
    try {
        const lv::Program prog = lv::Program::load(path);
        std::printf("loopvm %s: %s\n", loopvm_version(), prog.signature(0).c_str());

        struct Job {
            std::vector<float> xs;
            float decay;
            std::string text, last;
        };
        std::vector<Job> jobs = {{{1, 2, 3, 4, 5, 6}, 0.5f, "", ""}, {{1, 1, 1, 1, 1, 1}, 2.0f, "", ""}};
        std::vector<std::thread> threads;
        std::vector<std::exception_ptr> errors(jobs.size());
        for (size_t i = 0; i < jobs.size(); i++) {
            threads.emplace_back([&, i] {
                try {
                    Job &j = jobs[i];
                    lv::Tensor xs = lv::f32({2, 3}, j.xs), decay = lv::f32({}, {j.decay});
                    lv::Result r = prog.call("main", {xs.get(), decay.get()}, LOOPVM_TIER_INTERP);
                    j.text = loopvm_result_to_string(r.get());
                    j.last = show(lv::to_vector(loopvm_result_get(r.get(), 0)));
                } catch (...) {
                    errors[i] = std::current_exception();
                }
            });
        }
        for (auto &t : threads) t.join();
        for (auto &e : errors)
            if (e) std::rethrow_exception(e);
        for (size_t i = 0; i < jobs.size(); i++) {
            std::printf("thread %zu: %s\n", i, jobs[i].text.c_str());
            std::printf("thread %zu: last = %s\n", i, jobs[i].last.c_str());
        }

        // An error comes back as an exception with loopvm's message.
        try {
            prog.call("nope", {}, LOOPVM_TIER_AUTO);
            std::printf("unknown function: no error?\n");
            return 1;
        } catch (const lv::Error &e) {
            std::printf("unknown function: %s\n", e.what());
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
