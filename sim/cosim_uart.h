// Host-side UART line models for the qaccel co-simulation harness (cosim_main.cpp).
//
// Both run on the design's clock: one call per rising edge, no Python, no allocation. Frames
// are 8N1 (start bit, 8 data bits LSB first, stop bit) at a whole number of clocks per bit;
// host and device share the clock, so there is no drift to model.
#ifndef QACCEL_COSIM_UART_H
#define QACCEL_COSIM_UART_H

#include <cstdint>

namespace qaccel_cosim {

// Drives the device's receive pin (uart_rx) from host bytes.
class UartLineDriver {
 public:
    UartLineDriver(uint32_t clocks_per_bit, uint32_t gap_bits)
        : clocks_per_bit_(clocks_per_bit), gap_bits_(gap_bits) {}

    // Level to put on the pin before the next rising edge.
    uint8_t line() const { return line_; }
    // A character (or the idle gap after it) is on the line.
    bool active() const { return bits_left_ != 0; }
    // Start sending `byte`; only when !active().
    void start(uint8_t byte) {
        // bit 0: start (0), bits 1-8: data LSB first, then stop and gap bits (1)
        frame_ = static_cast<uint32_t>(byte) << 1 | ~0u << 9;
        bits_left_ = 10 + gap_bits_;
        timer_ = clocks_per_bit_;
        line_ = 0;
    }
    // Called after every rising edge: each bit is held for clocks_per_bit edges.
    void tick() {
        if (bits_left_ == 0 || --timer_ != 0) return;
        --bits_left_;
        frame_ = frame_ >> 1 | 1u << 31;
        line_ = bits_left_ ? (frame_ & 1) : 1;
        timer_ = clocks_per_bit_;
    }

 private:
    uint32_t clocks_per_bit_;
    uint32_t gap_bits_;
    uint32_t frame_ = ~0u;
    uint32_t bits_left_ = 0;
    uint32_t timer_ = 0;
    uint8_t line_ = 1;
};

// Samples the device's transmit pin (uart_tx) in the middle of each bit.
class UartLineReceiver {
 public:
    explicit UartLineReceiver(uint32_t clocks_per_bit) : clocks_per_bit_(clocks_per_bit) {}

    // A character is being received (the line left idle).
    bool active() const { return state_ != State::Idle; }
    uint64_t framing_errors() const { return framing_errors_; }

    // Called after every rising edge with the pin's level; returns true when `*byte` holds a
    // complete character.
    bool sample(uint8_t level, uint8_t* byte) {
        switch (state_) {
            case State::Idle:
                if (!level) {
                    state_ = State::Start;
                    timer_ = clocks_per_bit_ / 2;
                }
                return false;
            case State::Start:
                if (--timer_) return false;
                if (level) {  // shorter than half a bit: a glitch
                    state_ = State::Idle;
                } else {
                    state_ = State::Data;
                    timer_ = clocks_per_bit_;
                    bit_ = 0;
                    shift_ = 0;
                }
                return false;
            case State::Data:
                if (--timer_) return false;
                shift_ |= static_cast<uint8_t>((level & 1) << bit_);
                timer_ = clocks_per_bit_;
                if (++bit_ == 8) state_ = State::Stop;
                return false;
            case State::Stop:
                if (--timer_) return false;
                state_ = State::Idle;
                if (!level) {
                    ++framing_errors_;
                    return false;
                }
                *byte = shift_;
                return true;
        }
        return false;
    }

 private:
    enum class State { Idle, Start, Data, Stop };
    uint32_t clocks_per_bit_;
    State state_ = State::Idle;
    uint32_t timer_ = 0;
    uint32_t bit_ = 0;
    uint8_t shift_ = 0;
    uint64_t framing_errors_ = 0;
};

}  // namespace qaccel_cosim

#endif  // QACCEL_COSIM_UART_H
